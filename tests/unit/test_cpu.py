from ds2ir.model import cpu

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16
"""


def test_describe_reads_model_count_and_the_vector_extensions(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu.describe(path) == {"model": "Intel(R) Xeon(R) Platinum 8480+", "logical_cpus": 2,
                                  "vector_extensions": ["sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw",
                                                        "avx512_bf16", "amx_bf16"]}


def test_describe_without_cpuinfo_says_unknown(tmp_path):
    assert cpu.describe(tmp_path / "missing") == {"model": "unknown", "logical_cpus": 0, "vector_extensions": []}


def test_tensorflow_gemm_follows_the_widest_extension():
    assert cpu.tensorflow_gemm_isa(["avx", "avx2", "avx512f"]) == "mkl-dnn sgemm jit_avx512_common"
    assert cpu.tensorflow_gemm_isa(["sse4_1", "avx", "avx2", "fma"]) == "mkl-dnn sgemm jit_avx2"
    assert cpu.tensorflow_gemm_isa(["sse4_1"]) == "mkl-dnn sgemm reference"
