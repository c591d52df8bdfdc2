"""Push capture: everything between git and the log (spool, confirmer, hook entry, installers)."""
