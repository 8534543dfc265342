"""What every layer may use: domain errors, the session middleware, Redis clients and queues, small
utilities. It imports nothing from the other apps."""
