"""Background work: the TaskQueueBroker, its job registry, the scheduler and the tasks API."""
