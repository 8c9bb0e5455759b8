"""Pure stage functions (compute cores), the stage shell and the one CLI."""
