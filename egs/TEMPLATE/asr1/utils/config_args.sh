# Sourced by run.sh: config_args CONFIG [ARGS...] sets the array config_args to the asr.sh options of the
# training config's recipe: map (echo_plugin.recipe.overlay --recipe_args), CONFIG being replaced by the
# last --asr_config among ARGS when there is one. run.sh passes them after its defaults, before the user's.
config_args() {
    local config=$1 file
    shift
    while [ $# -gt 0 ]; do
        [ "$1" != --asr_config ] || [ $# -lt 2 ] || config=$2
        shift
    done
    file=$(mktemp)
    if ! python -m echo_plugin.recipe.overlay --config "${config}" --recipe_args > "${file}"; then
        rm -f "${file}"
        echo "$0: cannot read the recipe options of ${config}" >&2
        return 1
    fi
    mapfile -t config_args < "${file}"
    rm -f "${file}"
}
