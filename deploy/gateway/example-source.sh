#!/bin/sh
# Example tablet-gateway source for vakt-agent ([[gateway.source]] in agent.toml).
#
# Prints one JSON object per line for each tablet or phone it knows, in the
# format of docs/GATEWAY.md. Needs only POSIX sh, awk and sed (and adb for
# --adb). Anything on stderr ends up in the agent's log.
#
#   example-source.sh --mdm-csv /var/lib/mdm/export.csv
#       An MDM export with a header row. Recognised columns (any order, others
#       ignored): identifier (or udid, device_id), serial, model, os,
#       os_version, battery_percent, battery_health_percent,
#       storage_total_bytes, storage_free_bytes, last_sync (RFC 3339 or unix
#       ms). Fields must not contain commas (quotes around a field are removed).
#
#   example-source.sh --adb
#       Every device `adb devices -l` lists as "device" (USB-attached or
#       network adb): serial, model, Android version, battery level, /data size.
set -eu

json_escape() {
    # Backslash and double quote; control characters are dropped.
    printf '%s' "$1" | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g'
}

mdm_csv() {
    [ -r "$1" ] || { echo "cannot read $1" >&2; exit 1; }
    awk -F',' '
    # Character by character: backslashes in gsub replacements differ between awks.
    function esc(s,    r, i, c) {
        r = ""
        for (i = 1; i <= length(s); i++) {
            c = substr(s, i, 1)
            if (c == "\\" || c == "\"") r = r "\\" c
            else if (c >= " ") r = r c
        }
        return r
    }
    function clean(s) { sub(/\r$/, "", s); gsub(/^[ \t"]+|[ \t"]+$/, "", s); return s }
    function num(s) { return s ~ /^[0-9]+(\.[0-9]+)?$/ }
    NR == 1 {
        for (i = 1; i <= NF; i++) {
            name = tolower(clean($i))
            if (name == "udid" || name == "device_id") name = "identifier"
            col[name] = i
        }
        if (!("identifier" in col)) { print "no identifier (or udid, device_id) column" > "/dev/stderr"; exit 1 }
        next
    }
    {
        id = clean($(col["identifier"]))
        if (id == "") { print "line " NR ": no identifier; skipped" > "/dev/stderr"; next }
        out = "{\"identifier\":\"" esc(id) "\""
        split("serial model os os_version", texts, " ")
        for (k = 1; k <= 4; k++) {
            f = texts[k]
            if ((f in col) && clean($(col[f])) != "") out = out ",\"" f "\":\"" esc(clean($(col[f]))) "\""
        }
        split("battery_percent battery_health_percent storage_total_bytes storage_free_bytes", nums, " ")
        for (k = 1; k <= 4; k++) {
            f = nums[k]
            if ((f in col) && num(clean($(col[f])))) out = out ",\"" f "\":" clean($(col[f]))
        }
        if ("last_sync" in col) {
            v = clean($(col["last_sync"]))
            if (v ~ /^[0-9]+$/) out = out ",\"last_sync\":" v
            else if (v != "") out = out ",\"last_sync\":\"" esc(v) "\""
        }
        print out "}"
    }' "$1"
}

adb_devices() {
    command -v adb >/dev/null 2>&1 || { echo "adb is not installed" >&2; exit 1; }
    adb devices -l | awk 'NR > 1 && $2 == "device" { print $1 }' | while read -r id; do
        prop() { adb -s "$id" shell getprop "$1" 2>/dev/null | tr -d '\r'; }
        serial=$(prop ro.serialno)
        model=$(prop ro.product.model)
        version=$(prop ro.build.version.release)
        battery=$(adb -s "$id" shell dumpsys battery 2>/dev/null | tr -d '\r' |
            awk -F': *' '$1 ~ /^ *level$/ { print $2; exit }')
        # df -k /data: 1K blocks total and available, second line.
        storage=$(adb -s "$id" shell df -k /data 2>/dev/null | tr -d '\r' |
            awk 'NR == 2 { print $2 * 1024, $4 * 1024 }')
        line="{\"identifier\":\"$(json_escape "$id")\",\"os\":\"Android\""
        [ -n "$serial" ] && line="$line,\"serial\":\"$(json_escape "$serial")\""
        [ -n "$model" ] && line="$line,\"model\":\"$(json_escape "$model")\""
        [ -n "$version" ] && line="$line,\"os_version\":\"$(json_escape "$version")\""
        case "$battery" in ''|*[!0-9]*) ;; *) line="$line,\"battery_percent\":$battery" ;; esac
        if [ -n "$storage" ]; then
            set -- $storage
            line="$line,\"storage_total_bytes\":$1,\"storage_free_bytes\":$2"
        fi
        # Connected right now: that is a sync as far as the gateway knows.
        line="$line,\"last_sync\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}"
        printf '%s\n' "$line"
    done
}

case "${1:-}" in
    --mdm-csv) [ $# -eq 2 ] || { echo "usage: $0 --mdm-csv FILE" >&2; exit 2; }; mdm_csv "$2" ;;
    --adb) adb_devices ;;
    *) echo "usage: $0 --mdm-csv FILE | --adb" >&2; exit 2 ;;
esac
