# mpanel-agent %preun ($1: 0 = erase, 1 = upgrade). Erase stops and disables the agent; an
# upgrade leaves it alone (the old package's %postun restarts it if it is running).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now mpanel-agent.service >/dev/null 2>&1 || :
fi
exit 0
