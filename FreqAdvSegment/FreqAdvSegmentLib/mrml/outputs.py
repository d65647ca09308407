"""The module's outputs, remembered in its parameter node so the next Apply refills them.

Every Apply used to add a whole new set of nodes; now the nodes a run made are referenced from
the parameter node by role (``vafa/adversarial``, ``metrics_table``, ...) and handed back to the
next run as ``reuse``, which refills only nodes that a run made for that same role (never an
input, whatever a reference says).

    remember_outputs(parameter_node, results)           # after a run
    reuse = remembered_outputs(parameter_node)          # before the next: role -> node
    EngineRun(..., reuse=reuse)
"""

from __future__ import annotations

from typing import Any

ROLE_PREFIX = "FreqAdvSegment.output:"


def remember_outputs(parameter_node: Any, results: Any) -> None:
    """Reference every node of ``results`` (a ResultNodes) from ``parameter_node`` by role;
    roles of an earlier run that this one did not make are forgotten."""
    roles = results.node_roles()
    for role in _roles(parameter_node):
        if role not in roles:
            parameter_node.RemoveNodeReferenceIDs(ROLE_PREFIX + role)
    for role, node in roles.items():
        parameter_node.SetNodeReferenceID(ROLE_PREFIX + role, node.GetID())


def remembered_outputs(parameter_node: Any) -> dict[str, Any]:
    """Role -> node for the outputs referenced from ``parameter_node`` (nodes since deleted are
    left out)."""
    found = {}
    for role in _roles(parameter_node):
        node = parameter_node.GetNodeReference(ROLE_PREFIX + role)
        if node is not None:
            found[role] = node
    return found


def _roles(parameter_node: Any) -> list[str]:
    roles: list[str] = []
    parameter_node.GetNodeReferenceRoles(roles)  # fills the list (a std::vector in C++)
    return [r[len(ROLE_PREFIX):] for r in roles if r.startswith(ROLE_PREFIX)]


def forget_outputs(parameter_node: Any) -> None:
    """Forget every remembered output: the next run makes new nodes, these stay as they are."""
    for role in _roles(parameter_node):
        parameter_node.RemoveNodeReferenceIDs(ROLE_PREFIX + role)
