"""AdminService: tenants, API keys and grants, and the access audit."""
