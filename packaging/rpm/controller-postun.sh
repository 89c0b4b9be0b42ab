# mpanel-controller %postun ($1: 0 = erase, >= 1 = upgrade). Configuration (%config(noreplace))
# and the state (/var/lib/private/mpanel-controller, symlinked from /var/lib/mpanel-controller)
# are kept on erase; RPM has no purge, so remove those by hand to drop the embedded database.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        # Upgrade: restart only a running controller.
        systemctl try-restart mpanel-controller.service >/dev/null 2>&1 || :
    fi
fi
exit 0
