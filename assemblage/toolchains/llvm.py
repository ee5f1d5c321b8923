"""clang for Linux (native and cross through --target) and for Windows (PE + PDB via lld)."""

from __future__ import annotations

from dataclasses import dataclass

from assemblage.toolchains.base import CPU, DEBUG_FLAGS, LINUX_TRIPLES, WINDOWS_TRIPLES, BaseToolchain, CompilerSet

CLANG_OPTS = ("O0", "O1", "O2", "O3", "Os", "Oz", "Og", "Ofast")


@dataclass(frozen=True, kw_only=True)
class Clang(BaseToolchain):
    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet:
        v = self.version
        cpu, family = CPU[arch]
        if platform == "windows":
            t = WINDOWS_TRIPLES[arch]
            target = (f"--target={t}",)
            return CompilerSet(
                toolchain=self.name,
                platform=platform,
                arch=arch,
                cc=f"clang-{v}",
                cxx=f"clang++-{v}",
                ar=f"llvm-ar-{v}",
                ranlib=f"llvm-ranlib-{v}",
                strip=f"llvm-strip-{v}",
                windres=f"llvm-windres-{v}",
                cflags=(*target, self.opt_flag(opt), "-g", "-gcodeview", *flags),
                ldflags=(*target, f"-fuse-ld=lld-{v}", "-g", "-Wl,--pdb="),
                host_triple=t,
                cmake_system_name="Windows",
                cpu=cpu,
                cpu_family=family,
                pdb=True,
            )
        if arch == "x86_64":
            return CompilerSet(
                toolchain=self.name,
                platform=platform,
                arch=arch,
                cc=f"clang-{v}",
                cxx=f"clang++-{v}",
                cflags=(self.opt_flag(opt), *DEBUG_FLAGS, *flags),
                cpu=cpu,
                cpu_family=family,
            )
        t = LINUX_TRIPLES[arch]
        target = (f"--target={t}",)
        return CompilerSet(
            toolchain=self.name,
            platform=platform,
            arch=arch,
            cc=f"clang-{v}",
            cxx=f"clang++-{v}",
            ar=f"{t}-ar",
            ranlib=f"{t}-ranlib",
            strip=f"{t}-strip",
            cflags=(*target, self.opt_flag(opt), *DEBUG_FLAGS, *flags),
            ldflags=target,
            host_triple=t,
            cpu=cpu,
            cpu_family=family,
        )

    def packages(self, platform: str, arch: str) -> list[str]:
        v = self.version
        pkgs = [f"clang-{v}"]
        if platform == "windows":
            return [*pkgs, f"lld-{v}", f"llvm-{v}", "gcc-mingw-w64", "g++-mingw-w64"]
        if arch != "x86_64":
            t = LINUX_TRIPLES[arch]
            libc = {"aarch64": "libc6-dev-arm64-cross", "armhf": "libc6-dev-armhf-cross"}[arch]
            pkgs += [f"gcc-{t}", f"g++-{t}", libc, f"binutils-{t}"]
        return pkgs


@dataclass(frozen=True, kw_only=True)
class Msvc(BaseToolchain):
    """MSVC through MSBuild: runs only on Windows workers (``remote_only``)."""

    def opt_flag(self, opt: str) -> str:
        return f"/{opt}"

    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet:
        return CompilerSet(
            toolchain=self.name,
            platform=platform,
            arch=arch,
            cc="cl.exe",
            cxx="cl.exe",
            ar="lib.exe",
            ranlib="",
            strip="",
            cflags=(self.opt_flag(opt), "/Zi", *flags),
            cmake_system_name="Windows",
            pdb=True,
        )

    def packages(self, platform: str, arch: str) -> list[str]:
        return []
