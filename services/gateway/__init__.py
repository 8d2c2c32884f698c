"""The gateway: webhooks in, the build API, live events, replay, subscriptions and the dashboard."""
