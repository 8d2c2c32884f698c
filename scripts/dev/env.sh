# shellcheck shell=bash
# `./kiln-dev env`: show the environment tests and services get, password masked.

register_subcommand env "print .kiln/dev.env with the registry password masked"

cmd_env() {
  [[ -f $KILN_DEV_ENV ]] || die "no .kiln/dev.env yet" "run ./kiln-dev services"
  sed -E "s/^(export KILN_REGISTRY_PASSWORD=).*/\1'********'/" "$KILN_DEV_ENV"
  note "(full values: source .kiln/dev.env; password in $REGISTRY_PASSWORD_FILE)"
}
