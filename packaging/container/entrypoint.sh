#!/bin/sh
# The image's entrypoint: runs sfprocessor with upstream's container variables, each
# non-empty one becoming its flag (an empty one leaves sfprocessor's default), as upstream's
# CMD does. Arguments starting with '-' are added as flags (`podman run IMAGE -perflog`);
# any other first argument is run as a command instead (`podman run IMAGE sh`).
# exec: sfprocessor is PID 1 and gets SIGTERM itself, so it drains before exiting.
set -eu
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi
set -- ${LOG_LEVEL:+-log "$LOG_LEVEL"} ${DRIVER:+-driver "$DRIVER"} \
       ${DRIVER_DIR:+-driverdir "$DRIVER_DIR"} ${PLUGIN_DIR:+-plugdir "$PLUGIN_DIR"} \
       ${CONFIG_PATH:+-config "$CONFIG_PATH"} "$@" ${INPUT_PATH:+"$INPUT_PATH"}
exec /usr/local/sysflow/bin/sfprocessor "$@"
