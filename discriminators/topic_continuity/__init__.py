"""Topic-continuity discriminator (R5): P(message i continues the topic before it)."""
