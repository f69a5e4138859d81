"""What every recipe section shares: unknown keys are errors, assignments are validated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HeldOut(Section):
    """Whole files (or rows) held out of training for evaluation, chosen with a fixed seed."""

    fraction: float = Field(0.05, ge=0, lt=1)
    max_files: int | None = Field(50, gt=0)
    min_files: int = Field(1, ge=0)
    seed: int = 1234
