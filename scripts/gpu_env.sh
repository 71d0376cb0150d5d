# Source on the lent GPU machine after shared/gpu's install.sh (vLLM + Ray in /tmp/site):
# installs the project's few pure-Python dependencies the image lacks (wheels carried in
# .gpu-wheels/, made with `pip download --no-deps` for cp312) and sets the environment.
if [ -d .gpu-wheels ] && [ ! -d /tmp/site2 ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site2 .gpu-wheels/*.whl
fi
export PYTHONPATH=/tmp/site:/tmp/site2:$PWD PATH=/tmp/site/bin:$PATH
export VLLM_USE_FLASHINFER_SAMPLER=0 VLLM_ALLOW_INSECURE_SERIALIZATION=1 VLLM_NO_USAGE_STATS=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
# NVLink multicast stays off on the lent machines (shared GPUs)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
