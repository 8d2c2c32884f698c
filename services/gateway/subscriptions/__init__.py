"""HTTP subscriptions for tools that do not speak AMQP: register a URL and a routing-key filter."""
