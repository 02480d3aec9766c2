"""Real places from the source articles, for demo data and demo tokens."""

from __future__ import annotations

#: grid path -> (county, town, community, grid) names; codes of real counties (DOMAIN.md)
DEMO_GRIDS: dict[str, tuple[str, str, str, str]] = {
    "430382/101/003/07": ("韶山市", "银田镇", "银田寺社区", "第七网格"),
    "430382/101/003/02": ("韶山市", "银田镇", "银田寺社区", "第二网格"),
    "431002/004/011/21": ("北湖区", "下湄桥街道", "下湄桥社区", "第二十一网格"),
    "431382/102/005/03": ("涟源市", "六亩塘街道", "六亩塘村", "第三网格"),
    "429005/110/007/01": ("潜江市", "熊口镇", "马场村", "第一网格"),
    "610728/105/002/01": ("镇巴县", "简池镇", "简池社区", "第一网格"),
}

DEMO_COUNTIES = sorted({grid.split("/", 1)[0] for grid in DEMO_GRIDS})
