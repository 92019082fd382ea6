"""Talks to the simulator's COS endpoint with boto3, an independent S3 client: if boto3's signatures
are accepted and its parsers read the answers, the endpoint speaks S3 as COS does.

usage: boto3_against_cos.py ENDPOINT_URL SECRET_ID SECRET_KEY REGION BUCKET
Prints one JSON object of observations on stdout; the Rust test (sim/tests/cos.rs) judges them.
"""
import hashlib
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, secret_id, secret_key, region, bucket = sys.argv[1:6]


def client(key, style="path"):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=secret_id,
        aws_secret_access_key=key,
        region_name=region,
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}),
    )


def error_code(call):
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


s3 = client(secret_key)
out = {}
out["buckets"] = [b["Name"] for b in s3.list_buckets()["Buckets"]]

# A small tree, with a directory marker and keys a file system would not allow.
keys = ["top.txt", "dir/", "dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "other/d.txt", "odd key+ü.txt"]
for key in keys:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
out["root_keys"] = [o["Key"] for o in top.get("Contents", [])]
out["root_prefixes"] = [p["Prefix"] for p in top.get("CommonPrefixes", [])]
inside = s3.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
out["dir_keys"] = [o["Key"] for o in inside.get("Contents", [])]
out["dir_prefixes"] = [p["Prefix"] for p in inside.get("CommonPrefixes", [])]
out["listing_fields_complete"] = all(
    {"Key", "ETag", "Size", "LastModified", "StorageClass"} <= set(o) for o in top.get("Contents", [])
)
# boto3 asks for encoding-type=url by default and decodes the keys itself.
out["odd_key_listed"] = "odd key+ü.txt" in out["root_keys"]

# Pagination: every key exactly once, two at a time, through the paginator.
pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
paged = [o["Key"] for page in pages for o in page.get("Contents", [])]
out["paged_keys"] = paged
v1 = s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
out["paged_keys_v1"] = [o["Key"] for page in v1 for o in page.get("Contents", [])]

# Multipart upload: two 5 MiB parts and a short last one; the ETag is MD5-of-MD5s with a count.
part_bytes = [b"a" * (5 * 1024 * 1024), b"b" * (5 * 1024 * 1024), b"tail"]
upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin", ContentType="application/x-test")
upload_id = upload["UploadId"]
out["upload_listed"] = any(
    u["UploadId"] == upload_id for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
)
parts = []
for number, data in enumerate(part_bytes, start=1):
    etag = s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
    parts.append({"PartNumber": number, "ETag": etag})
out["parts_listed"] = [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="big.bin", UploadId=upload_id)["Parts"]]
out["invisible_before_complete"] = error_code(lambda: s3.head_object(Bucket=bucket, Key="big.bin"))
done = s3.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload_id, MultipartUpload={"Parts": parts})
md5s = b"".join(hashlib.md5(p).digest() for p in part_bytes)
out["multipart_etag_ok"] = done["ETag"] == '"%s-3"' % hashlib.md5(md5s).hexdigest()
head = s3.head_object(Bucket=bucket, Key="big.bin")
out["multipart_size_ok"] = head["ContentLength"] == sum(len(p) for p in part_bytes)
out["multipart_content_type"] = head["ContentType"]

# Small parts are refused at completion.
small = s3.create_multipart_upload(Bucket=bucket, Key="small.bin")["UploadId"]
small_parts = []
for number in (1, 2):
    etag = s3.upload_part(Bucket=bucket, Key="small.bin", UploadId=small, PartNumber=number, Body=b"x")["ETag"]
    small_parts.append({"PartNumber": number, "ETag": etag})
out["small_parts_code"] = error_code(
    lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="small.bin", UploadId=small, MultipartUpload={"Parts": small_parts}
    )
)
s3.abort_multipart_upload(Bucket=bucket, Key="small.bin", UploadId=small)
out["aborted_upload_code"] = error_code(lambda: s3.list_parts(Bucket=bucket, Key="small.bin", UploadId=small))

# Part copy with a range, then the copied object's bytes.
copy_upload = s3.create_multipart_upload(Bucket=bucket, Key="copied-part.bin")["UploadId"]
copied = s3.upload_part_copy(
    Bucket=bucket, Key="copied-part.bin", UploadId=copy_upload, PartNumber=1,
    CopySource={"Bucket": bucket, "Key": "big.bin"}, CopySourceRange="bytes=5242878-5242881",
)
s3.complete_multipart_upload(
    Bucket=bucket, Key="copied-part.bin", UploadId=copy_upload,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]}]},
)
out["part_copy_bytes"] = s3.get_object(Bucket=bucket, Key="copied-part.bin")["Body"].read().decode()

# Ranges: a middle, a suffix, and one past the end.
out["range_middle"] = s3.get_object(Bucket=bucket, Key="dir/a.txt", Range="bytes=4-6")["Body"].read().decode()
out["range_suffix"] = s3.get_object(Bucket=bucket, Key="dir/a.txt", Range="bytes=-3")["Body"].read().decode()
out["range_past_end_code"] = error_code(lambda: s3.get_object(Bucket=bucket, Key="dir/a.txt", Range="bytes=100-"))
etag = s3.head_object(Bucket=bucket, Key="dir/a.txt")["ETag"]
out["if_none_match_code"] = error_code(lambda: s3.get_object(Bucket=bucket, Key="dir/a.txt", IfNoneMatch=etag))
out["if_match_wrong_code"] = error_code(lambda: s3.get_object(Bucket=bucket, Key="dir/a.txt", IfMatch='"0000"'))

# Copy keeps metadata by default and replaces it on request.
s3.put_object(Bucket=bucket, Key="meta.txt", Body=b"m", Metadata={"mode": "644"}, ContentType="text/plain")
s3.copy_object(Bucket=bucket, Key="meta-copy.txt", CopySource={"Bucket": bucket, "Key": "meta.txt"})
copy_head = s3.head_object(Bucket=bucket, Key="meta-copy.txt")
out["copy_metadata"] = [copy_head["Metadata"], copy_head["ContentType"]]
s3.copy_object(
    Bucket=bucket, Key="meta.txt", CopySource={"Bucket": bucket, "Key": "meta.txt"},
    Metadata={"mode": "600"}, MetadataDirective="REPLACE",
)
out["replaced_metadata"] = s3.head_object(Bucket=bucket, Key="meta.txt")["Metadata"]
out["copy_to_itself_code"] = error_code(
    lambda: s3.copy_object(Bucket=bucket, Key="meta.txt", CopySource={"Bucket": bucket, "Key": "meta.txt"})
)

# Content-MD5 is checked.
out["bad_md5_code"] = error_code(
    lambda: s3.put_object(Bucket=bucket, Key="md5.txt", Body=b"data", ContentMD5="AAAAAAAAAAAAAAAAAAAAAA==")
)

# DeleteObjects, then what is left.
deleted = s3.delete_objects(
    Bucket=bucket, Delete={"Objects": [{"Key": "dir/a.txt"}, {"Key": "dir/b.txt"}, {"Key": "never-existed"}]}
)
out["deleted"] = sorted(d["Key"] for d in deleted.get("Deleted", []))
s3.delete_object(Bucket=bucket, Key="top.txt")
out["after_delete"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
out["missing_key_code"] = error_code(lambda: s3.get_object(Bucket=bucket, Key="top.txt"))
out["missing_bucket_code"] = error_code(lambda: s3.list_objects_v2(Bucket="no-such-bucket-1250000000"))

# Virtual-hosted style would need DNS for <bucket>.127.0.0.1; the Rust test covers it with a Host
# header. Wrong keys are refused.
out["wrong_secret_code"] = error_code(lambda: client(secret_key + "x").list_objects_v2(Bucket=bucket))
out["unknown_id_code"] = error_code(
    lambda: boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="AKIDnobody", aws_secret_access_key=secret_key,
        region_name=region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    ).list_buckets()
)
print(json.dumps(out))
