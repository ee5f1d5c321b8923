"""gcc for Linux (native and cross) and mingw-w64 gcc for Windows."""

from __future__ import annotations

from dataclasses import dataclass

from assemblage.toolchains.base import CPU, DEBUG_FLAGS, LINUX_TRIPLES, WINDOWS_TRIPLES, BaseToolchain, CompilerSet

GCC_OPTS = ("O0", "O1", "O2", "O3", "Os", "Og", "Ofast")


@dataclass(frozen=True, kw_only=True)
class Gcc(BaseToolchain):
    """``gcc-N`` for Linux: native on x86_64, the Debian cross packages for the others."""

    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet:
        v = self.version
        cflags = (self.opt_flag(opt), *DEBUG_FLAGS, *flags)
        cpu, family = CPU[arch]
        if arch == "x86_64":
            return CompilerSet(
                toolchain=self.name,
                platform=platform,
                arch=arch,
                cc=f"gcc-{v}",
                cxx=f"g++-{v}",
                ar=f"gcc-ar-{v}",
                ranlib=f"gcc-ranlib-{v}",
                cflags=cflags,
                cpu=cpu,
                cpu_family=family,
            )
        t = LINUX_TRIPLES[arch]
        return CompilerSet(
            toolchain=self.name,
            platform=platform,
            arch=arch,
            cc=f"{t}-gcc-{v}",
            cxx=f"{t}-g++-{v}",
            ar=f"{t}-ar",
            ranlib=f"{t}-ranlib",
            strip=f"{t}-strip",
            cflags=cflags,
            host_triple=t,
            cpu=cpu,
            cpu_family=family,
        )

    def packages(self, platform: str, arch: str) -> list[str]:
        v = self.version
        if arch == "x86_64":
            return [f"gcc-{v}", f"g++-{v}"]
        t = LINUX_TRIPLES[arch]
        libc = {"aarch64": "libc6-dev-arm64-cross", "armhf": "libc6-dev-armhf-cross"}[arch]
        return [f"gcc-{v}-{t}", f"g++-{v}-{t}", libc, f"binutils-{t}"]


@dataclass(frozen=True, kw_only=True)
class MingwGcc(BaseToolchain):
    """mingw-w64 gcc: PE with DWARF inside (no PDB)."""

    def compilers(self, platform: str, arch: str, opt: str, flags: tuple[str, ...] = ()) -> CompilerSet:
        t = WINDOWS_TRIPLES[arch]
        cpu, family = CPU[arch]
        return CompilerSet(
            toolchain=self.name,
            platform=platform,
            arch=arch,
            cc=f"{t}-gcc",
            cxx=f"{t}-g++",
            ar=f"{t}-ar",
            ranlib=f"{t}-ranlib",
            strip=f"{t}-strip",
            windres=f"{t}-windres",
            cflags=(self.opt_flag(opt), *DEBUG_FLAGS, *flags),
            host_triple=t,
            cmake_system_name="Windows",
            cpu=cpu,
            cpu_family=family,
        )

    def packages(self, platform: str, arch: str) -> list[str]:
        return ["gcc-mingw-w64", "g++-mingw-w64", "binutils-mingw-w64"]
