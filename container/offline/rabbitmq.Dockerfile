# RabbitMQ with the management UI, from Debian's rabbitmq-server (stands in for rabbitmq:3.13-management).
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management
COPY container/offline/rabbitmq-entrypoint.sh /usr/local/bin/kiln-rabbitmq
# Logs to stdout (docker-compose logs), not to /var/log/rabbitmq.
ENV RABBITMQ_LOGS=- RABBITMQ_SASL_LOGS=-
EXPOSE 5672 15672
CMD ["kiln-rabbitmq"]
