# im-e2e-servers: Redis, MariaDB, RabbitMQ and haproxy from Debian's packages in one image, standing
# in for the public images of docker-compose.yml where no image registry is reachable (the machines
# of scripts/docker-e2e). Test use only; docker/e2e/im-e2e-server is its entry point. From the
# repository root:  docker build --network host -f docker/e2e/servers.Dockerfile -t im-e2e-servers:dev .
FROM debian:bookworm-slim
# No package may start its service at install time (no init system in a build).
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && pkgs="redis-server redis-tools mariadb-server mariadb-client rabbitmq-server haproxy" \
 && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >/tmp/apt.log 2>&1 \
      || { apt-get update -q >>/tmp/apt.log 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs >>/tmp/apt.log 2>&1; } \
      || { tail -n 30 /tmp/apt.log; exit 1; }; } \
 && rm -rf /var/lib/apt/lists/* /tmp/apt.log /usr/sbin/policy-rc.d
COPY scripts/services/rabbitmq.conf.in /usr/local/share/im-e2e/
COPY docker/e2e/im-e2e-server /usr/local/bin/
ENTRYPOINT ["im-e2e-server"]
