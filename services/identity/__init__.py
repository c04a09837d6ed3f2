"""Identity primitives shared by the tenant service and the gateway's authz service."""
