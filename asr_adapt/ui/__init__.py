"""Terminal user interfaces (enrollment, live display), passed into the library below."""
