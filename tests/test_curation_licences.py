"""Licences: SPDX lines and header wording on synthetic files and on real headers from the
Debian corpora; full licence texts at a repository root; policy decisions."""

from __future__ import annotations

import shutil
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from adapt.data.curation.licences import LicencePolicy, file_licence, repo_licence

EMBEDDED = Path("/work/shared/corpora/embedded")
COMMON_LICENCES = Path("/usr/share/common-licenses")  # Debian's full licence texts
STDLIB = Path(sysconfig.get_paths()["stdlib"])
needs_corpora = pytest.mark.skipif(not EMBEDDED.is_dir(), reason="no shared corpora here")


@pytest.mark.parametrize("text, expected", [
    ("# SPDX-License-Identifier: MIT\nimport os\n", "MIT"),
    ("/* SPDX-License-Identifier: MIT OR Apache-2.0 */\nint x;\n", "MIT OR Apache-2.0"),
    ("// SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note\n",
     "GPL-2.0-only WITH Linux-syscall-note"),
    ("<!-- SPDX-License-Identifier: CC-BY-4.0 -->\n", "CC-BY-4.0"),
    ("#!/usr/bin/env python\n" * 39 + "# SPDX-License-Identifier: MIT\n", "MIT"),  # line 40
    ("x = 1\n" * 40 + "# SPDX-License-Identifier: MIT\n", None),  # line 41: too late
    # The SPDX line wins over the header's wording.
    ("# SPDX-License-Identifier: BSD-2-Clause\n# Licensed under the Apache License, "
     "Version 2.0\n", "BSD-2-Clause"),
    ("def add(a, b):\n    return a + b\n", None),
])
def test_spdx_lines(text, expected):
    assert file_licence(text) == expected


MIT = """# Copyright (c) 2024 Example Corp
#
# Permission is hereby granted, free of charge, to any person obtaining a copy
# of this software and associated documentation files (the "Software"), to deal
# in the Software without restriction, including without limitation the rights
"""
APACHE = """// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
"""
GPL3_LATER = """ * This program is free software: you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation, either version 3 of the License, or
 * (at your option) any later version.
"""
GPL2_ONLY = """# This program is free software; you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 2 as published
# by the Free Software Foundation.
"""
LGPL3 = """/* This library is free software; you can redistribute it and/or modify it
   under the terms of the GNU Lesser General Public License as published by the
   Free Software Foundation; either version 3 of the License, or (at your option)
   any later version. */
"""
BSD_HEAD = """Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:
1. Redistributions of source code must retain the above copyright notice.
2. Redistributions in binary form must reproduce the above copyright notice.
"""
BSD3 = BSD_HEAD + """3. Neither the name of the copyright holder nor the names of its contributors
   may be used to endorse or promote products derived from this software.
"""
MPL = """# This Source Code Form is subject to the terms of the Mozilla Public
# License, v. 2.0. If a copy of the MPL was not distributed with this
# file, You can obtain one at https://mozilla.org/MPL/2.0/.
"""
PSF = '"""Licensed under the Python Software Foundation License Version 2."""\n'


@pytest.mark.parametrize("header, expected", [
    (MIT, "MIT"), (APACHE, "Apache-2.0"), (GPL3_LATER, "GPL-3.0-or-later"),
    (GPL2_ONLY, "GPL-2.0-only"), (LGPL3, "LGPL-3.0-or-later"), (BSD_HEAD, "BSD-2-Clause"),
    (BSD3, "BSD-3-Clause"), (MPL, "MPL-2.0"), (PSF, "PSF-2.0"),
    ("/* License: GNU General Public License */", "GPL-1.0-or-later"),  # no version: any
    ("# Released under the GNU General Public License v3 or later.", "GPL-3.0-or-later"),
    ("# Docs are under the GFDL; code examples may use e.g. the GNU General Public License",
     None),  # a mention, not a grant
])
def test_synthetic_headers(header, expected):
    assert file_licence(header + "\nint main(void) { return 0; }\n") == expected


@needs_corpora
@pytest.mark.parametrize("path, expected", [
    ("avr-libc/stdio.h", "BSD-3-Clause"),
    ("avr-libc/avr/ioa6285.h", "Apache-2.0"),
    ("sdcc-libraries/lib/src/_divsint.c", "GPL-2.0-or-later"),  # + SDCC's linking exception
    ("sdcc-libraries/include/mcs51/P89LPC901.h", "LGPL-2.1-or-later"),
    # "GNU General Public License ... either version 2.1, or any later version": no GPL 2.1
    # exists, so the versions offered are 3.0 and later.
    ("sdcc-libraries/include/mcs51/ax8052.h", "GPL-3.0-or-later"),
    # A GPL header, then MIT for code taken from Dallas: both notices apply.
    ("sdcc-libraries/lib/src/ds400/ds400rom.c", "GPL-2.0-or-later AND MIT"),
    ("arduino-core-avr/cores/arduino/Udp.h", "MIT"),
    ("arduino-core-avr/cores/arduino/CDC.cpp", "ISC"),
    ("arduino-core-avr/libraries/SPI/src/SPI.h", "GPL-2.0-only OR LGPL-2.1-only"),
    ("arduino-core-avr/libraries/SoftwareSerial/src/SoftwareSerial.h", "LGPL-2.1-or-later"),
    ("arduino-core-avr/bootloaders/stk500v2/stk500boot.c", "GPL-1.0-or-later"),
    ("sdcc-libraries/include/stdalign.h", None),
])
def test_real_headers(path, expected):
    assert file_licence((EMBEDDED / path).read_text(errors="replace")) == expected


@needs_corpora
def test_avr_libc_is_bsd_or_apache():
    """avr-libc's COPYRIGHT.debian says BSD-3-clause, with Atmel's device headers under Apache
    2.0; the 5 files left are short headers with no notice (fcntl.h, locale.h...)."""
    counts = Counter(file_licence(p.read_text(errors="replace"))
                     for p in (EMBEDDED / "avr-libc").rglob("*.h"))
    assert set(counts) == {"BSD-3-Clause", "Apache-2.0", None}
    assert counts[None] <= 5 and counts["Apache-2.0"] >= 80


@pytest.mark.parametrize("name, filename, expected", [
    ("Apache-2.0", "LICENSE", "Apache-2.0"),
    ("BSD", "LICENSE.txt", "BSD-3-Clause"),
    ("GPL-2", "COPYING", "GPL-2.0-only"),  # a licence text grants no "or later"
    ("GPL-3", "COPYING", "GPL-3.0-only"),
    ("LGPL-2", "COPYING.txt", "LGPL-2.0-only"),
    ("LGPL-2.1", "LICENSE", "LGPL-2.1-only"),
    ("LGPL-3", "LICENSE.md", "LGPL-3.0-only"),
    ("MPL-2.0", "LICENSE", "MPL-2.0"),
    ("GFDL-1.3", "LICENSE", None),  # mentions the GPL, grants nothing of it
])
def test_repo_licence_from_full_texts(tmp_path, name, filename, expected):
    if not (COMMON_LICENCES / name).is_file():
        pytest.skip(f"no {COMMON_LICENCES / name} here")
    shutil.copy(COMMON_LICENCES / name, tmp_path / filename)
    assert repo_licence(tmp_path) == expected


def test_repo_licence_mit_psf_and_none(tmp_path):
    assert repo_licence(tmp_path) is None
    (tmp_path / "LICENSE").write_text("MIT License\n\nCopyright (c) 2024 X\n\n" + MIT.replace("# ", ""))
    assert repo_licence(tmp_path) == "MIT"
    # CPython's LICENSE.txt: history, then the PSF licence, then others (0BSD for the docs).
    assert repo_licence(STDLIB) == "PSF-2.0"


def test_policy_unknown_and_defaults():
    assert LicencePolicy().decide(None)[0] is True
    keep, reason = LicencePolicy(unknown="drop").decide(None)
    assert keep is False and "no licence" in reason
    assert LicencePolicy().decide("LicenseRef-Proprietary") == (True, "LicenseRef-Proprietary is allowed")
    # An unparseable expression is unknown.
    assert LicencePolicy(unknown="drop").decide("MIT OR")[0] is False
    assert LicencePolicy(unknown="keep").decide("(MIT")[0] is True


def test_policy_allow_deny():
    copyleft = LicencePolicy(deny=["GPL-*", "AGPL-*"])
    assert copyleft.decide("GPL-2.0-or-later") == (False, "GPL-2.0-or-later is denied")
    assert copyleft.decide("LGPL-2.1-or-later")[0] is True
    assert copyleft.decide("mit")[0] is True  # ids are case-blind

    permissive = LicencePolicy(allow=["MIT", "Apache-2.0", "BSD-*"])
    assert permissive.decide("BSD-3-Clause")[0] is True
    assert permissive.decide("ISC") == (False, "ISC is not in the allow list")

    # Deny wins over allow; a pattern without a suffix covers -only and -or-later.
    mixed = LicencePolicy(allow=["MIT", "GPL-3.0"], deny=["GPL-3.0-only"])
    assert mixed.decide("GPL-3.0-only") == (False, "GPL-3.0-only is denied")
    assert mixed.decide("GPL-3.0-or-later")[0] is True
    assert mixed.decide("GPL-3.0+")[0] is True


def test_policy_expressions():
    no_gpl = LicencePolicy(deny=["GPL-*"])
    # OR: the recipient chooses, so one acceptable alternative is enough, and it is named.
    assert no_gpl.decide("MIT OR GPL-3.0-only") == (True, "MIT is allowed")
    assert no_gpl.decide("mit or apache-2.0")[0] is True
    assert LicencePolicy(allow=["MIT"]).decide("GPL-2.0-only OR LGPL-2.1-only")[0] is False
    # AND: every part must be acceptable; the reason names the one that is not.
    assert no_gpl.decide("GPL-2.0-or-later AND MIT") == (False, "GPL-2.0-or-later is denied")
    assert LicencePolicy(allow=["MIT", "GPL-*"]).decide("GPL-2.0-or-later AND MIT")[0] is True
    # Parentheses, and WITH (an exception only adds permissions, so the base licence decides).
    assert no_gpl.decide("(MIT OR Apache-2.0) AND BSD-3-Clause")[0] is True
    assert no_gpl.decide("(MIT OR GPL-2.0-only) AND GPL-3.0-only")[0] is False
    assert no_gpl.decide("GPL-2.0-only WITH Linux-syscall-note")[0] is False
    assert LicencePolicy(allow=["GPL-2.0-only"]).decide("GPL-2.0-only WITH Linux-syscall-note")[0]


@needs_corpora
def test_policy_on_detected_licences():
    no_gpl = LicencePolicy(deny=["GPL-*"])
    spi = file_licence((EMBEDDED / "arduino-core-avr/libraries/SPI/src/SPI.h").read_text())
    assert no_gpl.decide(spi) == (True, "LGPL-2.1-only is allowed")  # chosen over GPL-2.0
    ds400 = file_licence((EMBEDDED / "sdcc-libraries/lib/src/ds400/ds400rom.c").read_text())
    assert no_gpl.decide(ds400)[0] is False


def test_prose_that_mentions_the_spdx_tag_is_not_a_licence():
    text = '"""Reads the ``SPDX-License-Identifier:`` line, else from the wording of its header."""\n'
    assert file_licence(text) is None
    assert file_licence("// SPDX-License-Identifier: (MIT OR Apache-2.0)\n") == "(MIT OR Apache-2.0)"
