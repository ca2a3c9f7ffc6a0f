"""The consuming half: stream entries delivered to the application (consumer groups, retries,
dead letters, claims of stale pendings). redis-py is imported only here, and only when
`messages.subscriptions` is set (it costs RSS the publish-only agent does not need)."""
