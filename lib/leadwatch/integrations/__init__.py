"""Outside services leadwatch talks to: Green-API (WhatsApp) and EspoCRM."""
