"""The source rewrite of tests/kernels/emulate.py, on snippets (no compiler needed)."""
import pytest

import emulate


def test_launches_become_launcher_calls_on_the_same_lines():
    src = ("  if (big) {\n"
           "    k<T, int64_t><<<static_cast<unsigned>(std::min<int64_t>(n, 65535)), kThreads, 0, stream>>>(\n"
           "        p, x, y);\n  }\n  else other::k2<<<dim3(a, b), 128>>>();\n")
    out = emulate.rewrite_launches(src, "k.cu")
    assert out.count("\n") == src.count("\n")
    assert ('::tk_emu::launch("k", static_cast<unsigned>(std::min<int64_t>(n, 65535)), kThreads, 0, stream, '
            '[](auto&&... tk_emu_a) { k<T, int64_t>(tk_emu_a...); }, std::make_tuple(p, x, y))') in out
    assert ('else ::tk_emu::launch("other::k2", dim3(a, b), 128, 0, nullptr, [](auto&&... tk_emu_a) '
            '{ other::k2(tk_emu_a...); }, std::make_tuple())') in out
    assert "<<<" not in out and ">>>" not in out


@pytest.mark.parametrize("bad, message", [("k<<<grid>>>(x);", r"k\.cu:1: expected <<<grid, block"),
                                          ("(f())<<<g, b>>>(x);", r"k\.cu:1: cannot read the kernel name"),
                                          ("k<<<g, b>>> ;", r"k\.cu:1: expected the kernel's arguments")])
def test_unreadable_launches_are_named(bad, message):
    with pytest.raises(emulate.RewriteError, match=message):
        emulate.rewrite_launches(bad, "k.cu")


def test_extern_shared_becomes_the_blocks_dynamic_shared_memory():
    out = emulate.rewrite_shared("extern __shared__ __align__(16) unsigned char raw[];\n"
                                 "  extern  __shared__ float s[ ];")
    assert out == ("unsigned char* const raw = reinterpret_cast<unsigned char*>(::tk_emu::dynamic_shared());\n"
                   "  float* const s = reinterpret_cast<float*>(::tk_emu::dynamic_shared());")


def test_launch_bounds_become_a_check_at_the_top_of_the_body():
    src = ("template <typename T>\n"
           "__global__ void __launch_bounds__(kThreads, 2) kern(P p,\n    T* y) {\n  body();\n}\n"
           "__global__ void __launch_bounds__(64) decl(int);\n")
    out = emulate.rewrite_launch_bounds(src, "k.cu")
    assert "__launch_bounds__" not in out and out.count("\n") == src.count("\n")
    assert "T* y) { if (!::tk_emu::within_launch_bounds(\"kern\", kThreads, 2)) return;\n  body();" in out
    assert "void  decl(int);" in out


def test_cuda_registrations_take_the_cpu_key():
    src = ("TORCH_LIBRARY_IMPL(ns, CPU, m) {\n  m.impl(\"a\", &a<false>);\n}\n\n"
           "TORCH_LIBRARY_IMPL(ns, CUDA, m) {\n  m.impl(\"a\", &a<true>);\n}\n")
    out = emulate.rewrite_registrations(src)
    assert out.count("\n") == src.count("\n") and "<false>" not in out
    assert "TORCH_LIBRARY_IMPL(ns, CPU, m) {\n  m.impl(\"a\", &a<true>);" in out and "CUDA" not in out


def test_every_cu_file_is_compiled(tmp_path):
    src = tmp_path / "csrc"
    src.mkdir()
    (src / "ops.cpp").write_text("TORCH_LIBRARY_IMPL(ns, CUDA, m) {}\n")
    (src / "a.cu").write_text("k<<<1, 32>>>(x);\n")
    (src / "new_op.cu").write_text("extern __shared__ float s[];\n")
    (src / "a.h").write_text("// header\n")
    (src / "notes.txt").write_text("")
    sources = emulate.prepare(src, tmp_path / "out")
    assert [p.name for p in sources] == ["a.cu.cpp", "new_op.cu.cpp", "ops.cpp"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.cu.cpp", "a.h", "new_op.cu.cpp", "ops.cpp"]
    assert (tmp_path / "out" / "a.cu.cpp").read_text().startswith('#include "tk_emu_kernel.h"\n#line 1 ')
    key = emulate.build_key(src)
    (src / "new_op.cu").write_text("extern __shared__ double s[];\n")
    assert emulate.build_key(src) != key
