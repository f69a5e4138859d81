"""Recipes: the YAML schema and its loader."""

from adapt.recipe.load import LoadedRecipe, load_recipe
from adapt.recipe.schema import Recipe

__all__ = ["LoadedRecipe", "Recipe", "load_recipe"]
