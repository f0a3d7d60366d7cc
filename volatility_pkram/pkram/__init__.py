"""PKRAM (RFC v1 2020, v2 2021, v3 2023): the super block, node/obj/link lists, identity map and region list."""
