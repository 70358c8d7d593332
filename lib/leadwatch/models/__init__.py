"""Request models (what a route takes, parsed with pydantic) and response models (what it answers)."""
