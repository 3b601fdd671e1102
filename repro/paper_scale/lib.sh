# shellcheck shell=bash
# Shared by gpt2_124m.sh and vit_s16_imagenet.sh (sourced, not run).
# Expects $PROG (the script's name, for messages) to be set.

OPTIMS="adamw sgdm sgd_sai sinkgd slimadam"

die() {
    echo "$PROG: $*" >&2
    exit 1
}

# check_optim NAME: one of the five, or a one-line error
check_optim() {
    case " $OPTIMS " in
    *" $1 "*) ;;
    *) die "unknown OPTIM '$1' (one of: $OPTIMS)" ;;
    esac
}

# abs_path P: P made absolute against the caller's directory (globs stay globs),
# so that the scripts can run everything from the repository root
abs_path() {
    case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$CALLER_DIR" "$1" ;;
    esac
}

# python3 with the standard library (Debian's if present)
python_bin() {
    if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3 || die "needs python3"; fi
}

# the 1-minute load average, printed with the smoke's estimate (other jobs slow it down)
load_average() {
    cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"
}

# print_command ARGS...: the trainer command, one flag per line, ready to paste
# (arguments quoted only where the shell needs it)
print_command() {
    printf 'command:'
    local a q
    for a in "$@"; do
        case $a in
        *[!A-Za-z0-9_./,=:+-]*) q=$(printf '%q' "$a") ;;
        *) q=$a ;;
        esac
        case $a in
        -[a-zA-Z-]*) printf ' \\\n    %s' "$q" ;;
        *) printf ' %s' "$q" ;;
        esac
    done
    printf '\n'
}
