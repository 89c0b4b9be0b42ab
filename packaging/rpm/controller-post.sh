# mpanel-controller %post ($1: 1 = install, 2 = upgrade). Idempotent. The state directory is
# made by the unit (StateDirectory=, owned by its dynamic user).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    cat <<'MSG'
mpanel-controller is installed. Set ENCRYPTION_KEY (openssl rand -hex 32) and DATABASE_URL in
/etc/mpanel/controller.env, then: systemctl enable --now mpanel-controller
MSG
fi
exit 0
