"""palmhall: the backend of a township palm-top government service (掌上办)."""
