# Source on the lent GPU machine after unpacking vLLM 0.20 into /root/site (../shared/gpu/README.md):
# makes this checkout importable as `sparse_frontier` *with* its vllm.general_plugins entry point
# (a minimal dist-info, since the machine has no network to pip-install the project).
meta=/root/sf-meta/sparse_frontier-0.1.0.dist-info
mkdir -p "$meta"
printf 'Metadata-Version: 2.1\nName: sparse-frontier\nVersion: 0.1.0\n' > "$meta/METADATA"
printf '[vllm.general_plugins]\nsparse_frontier = sparse_frontier.vllm_plugin:register\n' > "$meta/entry_points.txt"
export PYTHONPATH=/root/site:$PWD:/root/sf-meta
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
