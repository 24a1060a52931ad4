"""Human review: queues, labels, users, agreement, export and import (`workbench review`, `workbench agreement`)."""
