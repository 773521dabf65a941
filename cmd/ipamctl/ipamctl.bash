# bash completion for ipamctl (installed as
# share/bash-completion/completions/ipamctl). Plain bash: it needs neither
# the bash-completion package's helpers nor a running daemon.

# The options of each command, as `ipamctl COMMAND --help` lists them.
_ipamctl_options()
{
	local tls="--tls-ca --tls-cert --tls-key --tls-server-name --spiffe --spiffe-id"

	case $1 in
	allocate) echo "--conduit --node --name --family --trench --target --timeout $tls --help" ;;
	release) echo "--conduit --node --name --family --trench --admin --timeout --help" ;;
	health) echo "--service --json --admin --target --timeout $tls --help" ;;
	show|usage) echo "--conduit --node --json --admin --timeout --help" ;;
	check) echo "--json --admin --timeout --help" ;;
	export) echo "--admin --timeout --help" ;;
	import) echo "--data-source --help" ;;
	instances) echo "--help" ;;
	esac
}

_ipamctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmds="allocate release health show usage check export import instances help"
	local cmd=${COMP_WORDS[1]}

	COMPREPLY=()
	if [[ $COMP_CWORD -eq 1 ]]; then
		COMPREPLY=($(compgen -W "$cmds --help --version" -- "$cur"))
		return
	fi
	if [[ $cmd == help ]]; then
		[[ $COMP_CWORD -eq 2 ]] &&
		    COMPREPLY=($(compgen -W "${cmds% help}" -- "$cur"))
		return
	fi
	case $prev in
	--family)
		COMPREPLY=($(compgen -W "ipv4 ipv6" -- "$cur"))
		return ;;
	--admin|--data-source|--tls-ca|--tls-cert|--tls-key)
		COMPREPLY=($(compgen -f -- "$cur"))
		return ;;
	--conduit|--node|--name|--trench|--target|--timeout|--service|\
	--tls-server-name|--spiffe-id)
		return ;;
	esac
	if [[ $cur == -* || $cmd != import ]]; then
		COMPREPLY=($(compgen -W "$(_ipamctl_options "$cmd")" -- "$cur"))
	else
		COMPREPLY=($(compgen -f -- "$cur"))
	fi
}

complete -F _ipamctl ipamctl
