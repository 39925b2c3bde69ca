"""Host power (CPU, DRAM, fans, NICs, switches, power-supply losses) per GPU, by platform class.

NVML measures the GPU board only; the wall also feeds the rest of the machine. One pure function per question:
:func:`platform_class` says what kind of machine a GPU sits in, :func:`host_power_w_per_gpu` says how many watts of
that machine each GPU of the job carries, with the stated assumption and its source. Constants and sources are in
docs/ENERGY_MODEL.md ("Host power").

    host W per GPU = node base W / GPUs in the node + PSU loss x (GPU board power + node base W / GPUs)

* ``sxm_node`` (HGX / DGX / OAM baseboards: NVLink between all GPUs): base = SXM_BASE_FRACTION x GPU TDP per GPU
  (CPUs, DRAM, NVSwitches, NICs, fans), calibrated on the one published node measurement: an 8 x H100 HGX node
  peaked at 8.4 kW in training with its GPUs near their 700 W (Latif et al., IEEE Access 13, 2025), i.e. ~2.8 kW
  beyond the 5.6 kW of GPUs at the wall = 0.5 x TDP per GPU including power-supply losses.
* ``pcie_server`` (data-centre PCIe cards in a 2-socket server): PCIE_SERVER_BASE_W for the whole node (two CPUs at
  partial load ~ 2 x 150 W, DRAM, fans, NIC, storage ~ 150 W), shared by the GPUs in it; 80 PLUS Platinum supplies.
* ``desktop`` (GeForce / workstation cards in a tower): DESKTOP_BASE_W (a desktop CPU feeding a training loop,
  ~ 65-100 W, + board, DRAM, storage, fans ~ 40 W); 80 PLUS Gold supply.
"""

from __future__ import annotations

from ..types import GpuSpec

PLATFORMS = ("desktop", "pcie_server", "sxm_node")
# Latif et al. 2025: 8.4 kW node peak - 8 x 700 W GPUs = 2.8 kW = 0.5 x GPU TDP per GPU at the wall, of which the
# power-supply loss at 94 % efficiency is ~ 6 % of 8.4 kW; the rest (0.41 x TDP) is the node's own DC load.
SXM_BASE_FRACTION = 0.41
PCIE_SERVER_BASE_W = 450.0
DESKTOP_BASE_W = 120.0
# power-supply efficiency at ~50 % load: 80 PLUS Platinum 94 % (servers), 80 PLUS Gold 90 % (desktops)
PSU_EFFICIENCY = {"desktop": 0.90, "pcie_server": 0.94, "sxm_node": 0.94}
_WORKSTATION_PREFIXES = ("geforce", "quadro", "rtx a", "rtx 6000 ada", "titan")


def platform_class(gpu: GpuSpec) -> str:
    """``sxm_node`` for boards on an NVLink baseboard (SXM / OAM: ``nvlink_gbs`` > 0 in the database),
    ``desktop`` for GeForce / Quadro / RTX A-series workstation cards, ``pcie_server`` for the other PCIe cards."""
    if gpu.nvlink_gbs and gpu.nvlink_gbs > 0:
        return "sxm_node"
    name = (gpu.name or "").lower()
    if name.startswith(_WORKSTATION_PREFIXES):
        return "desktop"
    return "pcie_server"


def host_power_w_per_gpu(gpu: GpuSpec, gpus_per_node: int, platform: str | None = None,
                         node: str = "") -> tuple[float, str]:
    """Watts of host (everything but the GPU boards, power-supply losses included) per GPU of the job, and the
    assumption line that states it. ``gpus_per_node``: GPUs sharing one machine (a desktop holds at most a few);
    ``node``: where that count comes from, stated in the line when given."""
    cls = platform or platform_class(gpu)
    if cls not in PLATFORMS:
        raise ValueError(f"unknown platform class {cls!r} ({', '.join(PLATFORMS)})")
    n = max(1, int(gpus_per_node or 1))
    loss = 1.0 / PSU_EFFICIENCY[cls] - 1.0
    if cls == "sxm_node":
        base = SXM_BASE_FRACTION * gpu.tdp_w
        how = (f"SXM/HGX node: CPUs, DRAM, NVSwitches, NICs and fans {SXM_BASE_FRACTION:.2f} x the {gpu.tdp_w:.0f} W "
               f"GPU TDP per GPU (an 8 x H100 HGX node peaks at 8.4 kW in training with 5.6 kW of GPUs: Latif et al., "
               f"IEEE Access 2025)")
    elif cls == "pcie_server":
        base = PCIE_SERVER_BASE_W / n
        how = (f"PCIe server: {PCIE_SERVER_BASE_W:.0f} W for the node (2 CPUs at partial load, DRAM, fans, NIC, "
               f"storage) shared by {n} GPU{'s' if n > 1 else ''}" + (f" ({node})" if node else ""))
    else:
        base = DESKTOP_BASE_W / n
        how = (f"desktop/workstation: {DESKTOP_BASE_W:.0f} W for the machine (a desktop CPU feeding the training "
               f"loop, board, DRAM, storage, fans) shared by {n} GPU{'s' if n > 1 else ''}")
    w = base + loss * (gpu.tdp_w + base)
    text = (f"host power {w:.0f} W per GPU: {how}, + power-supply losses at {PSU_EFFICIENCY[cls]:.0%} efficiency on "
            f"GPU board power (taken at TDP) and host (stated estimate; the node is not measured)")
    return w, text
