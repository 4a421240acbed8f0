def test_health_and_login(server, api, sa_token):
    import httpx

    assert httpx.get(server.base_url + "/health/live").json() == {"status": "ok", "checks": {}}
    ready = httpx.get(server.base_url + "/health/ready").json()
    assert ready["checks"] == {"database": "ok", "redis": "ok", "hub": "ok"}
    me = api.as_(sa_token, "GET", "/users/me").json()
    assert me["is_super_admin"] is True
