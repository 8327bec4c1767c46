# {{ header }}
"""Framework adapters generated from adapter manifests: {% for fw in frameworks %}`{{ fw.id }}`{% if !loop.last %}, {% endif %}{% endfor %}.

Each framework is a subpackage ``{{ package }}.<id>`` with ``proxy`` (typed client
proxies for a `mlbridge.SessionContext`), ``dispatch`` (the `mlbridge.dispatch.Adapter` a
worker serves) and, where the manifest asks for them, ``variable_aware`` classes.
"""

FRAMEWORKS: tuple[str, ...] = ({% for fw in frameworks %}"{{ fw.id }}",{% if !loop.last %} {% endif %}{% endfor %})
"""The framework ids in this package."""
