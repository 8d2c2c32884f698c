"""models: the shapes services exchange, validated by pydantic-core (native, tier `minimal`)."""
