"""Topic-continuity discriminator: P(message i continues the topic before it)."""
