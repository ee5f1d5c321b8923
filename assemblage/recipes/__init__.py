"""Recipes: the models, loading with located errors, and matrix expansion."""

from assemblage.recipes.load import load_recipe, parse_recipe, parse_recipe_text
from assemblage.recipes.matrix import Config, expand_matrix
from assemblage.recipes.models import Recipe

__all__ = ["Config", "Recipe", "expand_matrix", "load_recipe", "parse_recipe", "parse_recipe_text"]
