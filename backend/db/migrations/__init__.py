"""palmhall migrations (tortoise native)."""
