"""Taking FHIR notifications in: the route, the notifier's credential check, the group-committing batcher."""
