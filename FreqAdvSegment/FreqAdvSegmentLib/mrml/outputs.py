"""The module's outputs, remembered in its parameter node so the next Apply refills them.

Every Apply used to add a whole new set of nodes; now the nodes a run made are referenced from
the parameter node by role (``vafa/adversarial``, ``metrics_table``, ...) and handed back to the
next run as ``reuse``, which refills only nodes that a run made for that same role (never an
input, whatever a reference says).

    remember_outputs(parameter_node, results)           # after a run
    reuse = remembered_outputs(parameter_node)          # before the next: role -> node
    EngineRun(..., reuse=reuse)

The reference roles hold no colon: vtkMRMLNode writes references as ``role:id;`` and splits at
the first colon when reading, so the roles of scenes saved before (``FreqAdvSegment.output:``)
come back as one role ``FreqAdvSegment.output`` with no node. Such a scene is migrated when its
outputs are first asked for: each role is found again on the nodes that carry it in their
``FreqAdvSegment.Role`` attribute (the newest such node, i.e. the last run's).
"""

from __future__ import annotations

from typing import Any

ROLE_PREFIX = "FreqAdvSegment.output."
OLD_ROLE_PREFIX = "FreqAdvSegment.output:"  # before: valid in memory, broken once saved
_BROKEN_OLD_ROLE = OLD_ROLE_PREFIX[:-1]  # what a saved old-prefix reference reads back as


def remember_outputs(parameter_node: Any, results: Any) -> None:
    """Reference every node of ``results`` (a ResultNodes) from ``parameter_node`` by role;
    roles of an earlier run that this one did not make are forgotten."""
    migrate_roles(parameter_node)
    roles = results.node_roles()
    for role in _roles(parameter_node):
        if role not in roles:
            parameter_node.RemoveNodeReferenceIDs(ROLE_PREFIX + role)
    for role, node in roles.items():
        parameter_node.SetNodeReferenceID(ROLE_PREFIX + role, node.GetID())


def remembered_outputs(parameter_node: Any) -> dict[str, Any]:
    """Role -> node for the outputs referenced from ``parameter_node`` (nodes since deleted are
    left out)."""
    migrate_roles(parameter_node)
    found = {}
    for role in _roles(parameter_node):
        node = parameter_node.GetNodeReference(ROLE_PREFIX + role)
        if node is not None:
            found[role] = node
    return found


def migrate_roles(parameter_node: Any) -> bool:
    """Rewrite references of the old colon prefix to ROLE_PREFIX; for a scene saved with them
    (where they read back broken), find each role again from the nodes' role attribute.
    True if anything was migrated."""
    roles = _all_roles(parameter_node)
    old = [r for r in roles if r.startswith(OLD_ROLE_PREFIX)]
    for role in old:  # in memory (never saved): the reference is intact, only renamed
        node_id = parameter_node.GetNodeReferenceID(role)
        parameter_node.RemoveNodeReferenceIDs(role)
        if node_id:
            parameter_node.SetNodeReferenceID(ROLE_PREFIX + role[len(OLD_ROLE_PREFIX):], node_id)
    if _BROKEN_OLD_ROLE not in roles:
        return bool(old)
    parameter_node.RemoveNodeReferenceIDs(_BROKEN_OLD_ROLE)
    if not _roles(parameter_node) and parameter_node.GetScene() is not None:
        for role, node in _nodes_by_role(parameter_node.GetScene()).items():
            parameter_node.SetNodeReferenceID(ROLE_PREFIX + role, node.GetID())
    return True


def _nodes_by_role(scene: Any) -> dict[str, Any]:
    """Role -> the last node in ``scene`` whose role attribute names it (later runs' nodes come
    later in the scene)."""
    from .results import ROLE_ATTRIBUTE

    found = {}
    nodes = scene.GetNodes()
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        role = node.GetAttribute(ROLE_ATTRIBUTE) if hasattr(node, "GetAttribute") else None
        if role:
            found[role] = node
    return found


def _all_roles(parameter_node: Any) -> list[str]:
    roles: list[str] = []
    parameter_node.GetNodeReferenceRoles(roles)  # fills the list (a std::vector in C++)
    return list(roles)


def _roles(parameter_node: Any) -> list[str]:
    return [r[len(ROLE_PREFIX):] for r in _all_roles(parameter_node) if r.startswith(ROLE_PREFIX)]


def forget_outputs(parameter_node: Any) -> None:
    """Forget every remembered output: the next run makes new nodes, these stay as they are."""
    migrate_roles(parameter_node)
    for role in _roles(parameter_node):
        parameter_node.RemoveNodeReferenceIDs(ROLE_PREFIX + role)
