"""The log layer: the EventLog API, subscriptions, the notifier and retention. No SQL here."""
