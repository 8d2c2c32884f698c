# An SMTP catcher in place of Mailpit (not packaged in Debian): the quick start's
# scripts/stack/mailcatcher.py, listening on the compose network; messages in /var/lib/mail.
ARG BASE=kiln-base:bookworm-amd64
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-aiosmtpd \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/stack/mailcatcher.py /opt/mailcatcher/
EXPOSE 1025
CMD ["python3", "/opt/mailcatcher/mailcatcher.py", "--host", "0.0.0.0", "--port", "1025", "--dir", "/var/lib/mail"]
