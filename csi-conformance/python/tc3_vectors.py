"""Prints TC3-HMAC-SHA256 known-answer vectors computed by Tencent's official Python SDK.

The Rust signer's known-answer test (common/src/cloud/signing.rs) embeds this script's output, so the
signer is checked against an implementation the project does not own. Re-run with:
    pip install tencentcloud-sdk-python-common && python3 tests/python/tc3_vectors.py
"""
import json
from unittest import mock

from tencentcloud.common import credential
from tencentcloud.common.abstract_client import AbstractClient
from tencentcloud.common.http.request import RequestInternal

CASES = [
    # (service, version, region, action, params, timestamp, secret_id, secret_key, token)
    ("cvm", "2017-03-12", "ap-guangzhou", "DescribeInstances",
     {"Limit": 1, "Filters": [{"Values": ["unnamed"], "Name": "instance-name"}]},
     1551113065, "AKIDEXAMPLE", "ExampleSecretKey", None),
    ("cbs", "2017-03-12", "ap-shanghai", "DescribeDisks",
     {"DiskIds": ["disk-abc12345"]},
     1700000000, "AKIDtest0123456789", "k3y-with-Special/+=chars", "tmp-token-xyz"),
    ("cfs", "2019-07-19", "na-siliconvalley", "DescribeCfsFileSystems",
     {}, 1767225599, "AKIDnewyear", "newyearkey", None),
]


class Client(AbstractClient):
    pass


for service, version, region, action, params, ts, sid, skey, token in CASES:
    client = Client(credential.Credential(sid, skey, token), region)
    client._service = service
    client._apiVersion = version
    req = RequestInternal(client._get_endpoint(), "POST", "/")
    with mock.patch("time.time", return_value=ts):
        client._build_req_with_tc3_signature(action, params, req)
    print(json.dumps({
        "service": service, "host": req.header["Host"], "action": action,
        "timestamp": ts, "secret_id": sid, "secret_key": skey,
        "content_type": req.header["Content-Type"], "payload": req.data,
        "authorization": req.header["Authorization"],
    }))
