"""Getting data in: `workbench import` (validated, transactional, a bulk lane) and the readers and formats it uses."""
