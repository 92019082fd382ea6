"""Calls the simulator with Tencent's official Python SDK, an independent client: if the simulator
accepts its signatures and answers in shapes the SDK parses, it speaks the real protocol.

usage: sdk_against_sim.py HOST:PORT SECRET_ID SECRET_KEY REGION
Prints one JSON line: {"zones": [...], "bad_key_code": "..."}.
"""
import json
import sys

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

endpoint, secret_id, secret_key, region = sys.argv[1:5]


def client(key):
    http = HttpProfile(protocol="http", endpoint=endpoint, reqMethod="POST")
    return CommonClient("cvm", "2017-03-12", credential.Credential(secret_id, key), region,
                        profile=ClientProfile(httpProfile=http))


zones = client(secret_key).call_json("DescribeZones", {})["Response"]["ZoneSet"]
try:
    client(secret_key + "x").call_json("DescribeZones", {})
    bad_key_code = None
except TencentCloudSDKException as e:
    bad_key_code = e.get_code()
print(json.dumps({"zones": [z["Zone"] for z in zones], "bad_key_code": bad_key_code}))
