# mpanel-agent %post ($1: 1 = install, 2 = upgrade). Idempotent; never enrolls.
mkdir -p /var/lib/mpanel-agent
chmod 0700 /var/lib/mpanel-agent
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ ! -e /var/lib/mpanel-agent/enrollment.json ]; then
    cat <<'MSG'
mpanel-agent is installed but not enrolled. With a token from the controller
(POST /api/servers/<id>/enrollment-token), enroll and start it:

  mpanel-agent enroll --controller https://CONTROLLER:7443 --token TOKEN && systemctl enable --now mpanel-agent

Configuration: /etc/mpanel/agent.toml (add the [panel] section for this host's control panel).
MSG
fi
exit 0
