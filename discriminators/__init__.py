"""turnforge."""
