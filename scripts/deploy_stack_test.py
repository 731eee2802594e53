"""The CloudFormation stack, created in an AWS emulator, with the real worker against it.

    .venv/bin/python scripts/deploy_stack_test.py [TRAILWATCH_BINARY]   (default target/debug/trailwatch)

Starts moto_server on a free loopback port and creates deploy/cloudformation/trailwatch.yaml
there: the full template, with its defaults, the EventBridge wiring, a KMS key for the
trail, the DynamoDB state backend, an access-log bucket and two backfill principals.
moto's CloudFormation creates the queues, the EventBridge rule, the alert topic, the log
group, the state table, the IAM roles and policies, the security group and the ECS
cluster, task definition and service, and the test checks their settings. moto has no
CloudFormation support for AWS::SQS::QueuePolicy, AWS::SNS::Subscription,
AWS::ApplicationAutoScaling::* and AWS::CloudWatch::Alarm: it skips them and still
reports CREATE_COMPLETE, so for those this test checks that every alarm on a TrailWatch
metric names a metric and dimension the worker really publishes, tries the e-mail
subscription's filter policy on SQS subscriptions of its own, and renders the queue
policy (and the template's Rules) for each stack's parameters and evaluates who may
send. moto's CloudFormation also ignores a table's TimeToLiveSpecification and
PointInTimeRecoverySpecification (describe_time_to_live says DISABLED) and reads
SSESpecification under the API's name (Enabled, not SSEEnabled): those three are
checked in the template, the key schema and billing mode in moto.

Then, as in an account:
  - the trail bucket sends its events to EventBridge, the sample CloudTrail files are
    uploaded under AWSLogs/ (and one object outside the prefix, which the rule must not
    forward), and the stack's rule delivers "Object Created" events to the stack's queue;
  - the worker runs with the credentials of the stack's task role (sts:AssumeRole), with
    moto enforcing IAM from then on, so the run fails if the role lacks something the
    worker needs; the role is also shown to be denied objects outside the prefix, the
    dead-letter queue and DynamoDB's Scan and DeleteTable, and allowed the state table's
    item calls and the access logs;
  - `trailwatch run --until-idle 5s`, with TRAILWATCH_QUEUE_URL from the stack outputs
    and the allow-list and [state] variables of the task definition (a worker that does
    not know TRAILWATCH_STATE_* ignores them), must print exactly the alerts
    `trailwatch scan` finds in the same files with the same rules (6 with the rules
    bundled when this was written), leave both queues empty and publish its metrics;
  - then an S3 server access log file arrives in the access-log bucket, whose own S3
    notification reaches the queue: a second run reads it (no forged-notification
    alert, no new alert: the sample access log alone raises none) and drains the queue.
deploy/iam-policy.json must say what the task role says. A second stack with the
CloudTrailSNS wiring, StateBackend=memory and no access-log bucket or backfill
principals checks that variant's conditions (moto cannot deliver through its
subscription).

moto's IAM enforcement matches actions and resource ARNs for SQS and S3 only (any other
service is checked against "*") and ignores condition keys, so the sns:Publish resource,
the namespace condition on PutMetricData and the DynamoDB statement's table ARN (checked
as text instead; enforced for its actions) are not exercised here. The worker prints
its alerts instead of also publishing them as the task definition's TRAILWATCH_SINKS
says (checked as text): with enforcement on, moto refuses the SDK's PublishBatch calls
with SignatureDoesNotMatch, though it takes its SQS and S3 calls. The SNS sink and
TRAILWATCH_SINKS' `;min_severity=` run against moto without enforcement in
tests/worker.rs. Everything listens and connects on 127.0.0.1 only.
"""

import ast
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.exceptions
import yaml

import awslocal
from awslocal import free_port, metric_sum

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "cloudformation" / "trailwatch.yaml"
SAMPLES = ROOT / "tests" / "data" / "seed"
REGION = "us-east-1"
BUCKET = "example-trail-logs"
ACCESS_LOG_BUCKET = "example-access-logs"
ACCESS_LOGS = ROOT / "tests" / "data" / "access-logs"
# moto's account: the stack's own, which owns the trail bucket here.
ACCOUNT = "123456789012"
# Who may enqueue backfills: one role by name, and a family of roles by wildcard.
BACKFILL_PRINCIPALS = [
    f"arn:aws:iam::{ACCOUNT}:role/trailwatch-backfill",
    f"arn:aws:iam::{ACCOUNT}:role/SecOps*",
]
# What the worker may do on its state table, and nothing more.
STATE_TABLE_ACTIONS = {
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
}


def fail(msg):
    print(f"deploy stack test: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def wait_until(what, pred, timeout=30.0):
    awslocal.wait_until(what, pred, fail, timeout)


def load_template():
    """The template as plain data, short-form intrinsics as {"Fn::X": ...}."""

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader, suffix, node):
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(TEMPLATE.read_text(), Loader=Loader)


class Moto:
    """A moto_server on a free loopback port."""

    def __init__(self):
        self.log = tempfile.TemporaryFile()
        self.proc, self.port, self.endpoint = awslocal.start_moto(fail, log=self.log)

    def client(self, service, creds=None):
        creds = creds or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION, **creds)

    def enforce_iam(self, on):
        """From now on, check every request against the caller's IAM policies (or stop)."""
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=b"0" if on else b"inf",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            check(r.status == 200, "moto did not accept /moto-api/reset-auth")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_stack(cf, name, params):
    cf.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
    )
    cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    stack = cf.describe_stacks(StackName=name)["Stacks"][0]
    check(stack["StackStatus"] == "CREATE_COMPLETE", f"stack {name}: {stack['StackStatus']}")
    resources = {
        r["LogicalResourceId"]: r
        for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        if r["LogicalResourceId"]
    }
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}, resources


def check_stack(moto, outputs, resources, kms_key_arn, topic_min_severity):
    """What moto created is what the template says; returns the task role's policies
    and the task definition's environment."""
    sqs, ecs, iam, events = (moto.client(s) for s in ("sqs", "ecs", "iam", "events"))
    for key in (
        "QueueUrl",
        "QueueArn",
        "DeadLetterQueueUrl",
        "AlertTopicArn",
        "LogGroupName",
        "StateTableName",
    ):
        check(outputs.get(key), f"output {key} missing")

    attrs = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    check(redrive["deadLetterTargetArn"] == dlq["QueueArn"], "the queue's redrive does not target the DLQ")
    check(int(redrive["maxReceiveCount"]) == 5, f"maxReceiveCount {redrive['maxReceiveCount']}, want 5")
    check(attrs.get("SqsManagedSseEnabled") == "true", "queue without SSE")
    check(dlq.get("SqsManagedSseEnabled") == "true", "DLQ without SSE")
    check(dlq["MessageRetentionPeriod"] == "1209600", "DLQ retention is not 14 days")
    check(outputs["QueueArn"] == attrs["QueueArn"], f"output QueueArn {outputs['QueueArn']}")
    table_arn = check_state_table(moto, outputs["StateTableName"], resources)

    rule = resources["TrailObjectCreatedRule"]["PhysicalResourceId"]
    pattern = json.loads(events.describe_rule(Name=rule)["EventPattern"])
    check(pattern["detail"]["bucket"]["name"] == [BUCKET], f"rule pattern {pattern}")
    targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    check([t["Arn"] for t in targets] == [attrs["QueueArn"]], f"rule targets {targets}")

    c, env = container(ecs, resources)
    check(env["TRAILWATCH_QUEUE_URL"] == outputs["QueueUrl"], f"task environment {env}")
    check(
        env["TRAILWATCH_SINKS"] == f"stdout,sns:{outputs['AlertTopicArn']};min_severity={topic_min_severity}",
        f"task environment {env}",
    )
    # The allow-list: the trail bucket and the access-log bucket, nothing else.
    check(env["TRAILWATCH_BUCKETS"].split(",") == [BUCKET, ACCESS_LOG_BUCKET], f"task environment {env}")
    check(env["TRAILWATCH_KEY_PREFIX"] == "AWSLogs/", f"task environment {env}")
    check(env["TRAILWATCH_EXPECTED_BUCKET_OWNER"] == ACCOUNT, f"task environment {env}")
    check(env["TRAILWATCH_STATE_BACKEND"] == "dynamodb", f"task environment {env}")
    check(env["TRAILWATCH_STATE_TABLE"] == outputs["StateTableName"], f"task environment {env}")
    check(env["TRAILWATCH_HEALTH_LISTEN"].startswith("127.0.0.1:"), f"task environment {env}")
    check(c.get("readonlyRootFilesystem") is True, "container root file system is writable")
    check(c.get("user") == "10001:10001", f"container user {c.get('user')}")
    check(
        c["healthCheck"]["command"] == ["CMD", "/usr/local/bin/trailwatch", "healthcheck"],
        f"container health check {c['healthCheck']['command']}",
    )
    check(c["logConfiguration"]["options"]["awslogs-group"] == outputs["LogGroupName"], "log group")

    docs = task_role_policies(iam, resources)
    statements = [s for doc in docs.values() for s in doc["Statement"]]
    by_sid = {s["Sid"]: s for s in statements}
    check(by_sid["ConsumeQueue"]["Resource"] == attrs["QueueArn"], f"{by_sid['ConsumeQueue']}")
    check(
        by_sid["ReadTrailLogs"]["Resource"] == f"arn:aws:s3:::{BUCKET}/AWSLogs/*",
        f"{by_sid['ReadTrailLogs']}",
    )
    check(
        by_sid["ReadTrailLogs"].get("Condition") == {"StringEquals": {"s3:ResourceAccount": ACCOUNT}},
        f"{by_sid['ReadTrailLogs']}",
    )
    check(by_sid["DecryptTrailLogs"]["Resource"] == kms_key_arn, f"{by_sid['DecryptTrailLogs']}")
    check(
        by_sid["DecryptTrailLogs"].get("Condition")
        == {"StringLike": {"kms:ViaService": "s3.*.amazonaws.com"}},
        f"{by_sid['DecryptTrailLogs']}",
    )
    check(by_sid["PublishAlerts"]["Resource"] == outputs["AlertTopicArn"], f"{by_sid['PublishAlerts']}")
    # The access logs: GetObject under the same prefix, on the same owner's bucket.
    check(
        by_sid["ReadAccessLogs"]
        == {
            "Sid": "ReadAccessLogs",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{ACCESS_LOG_BUCKET}/AWSLogs/*",
            "Condition": {"StringEquals": {"s3:ResourceAccount": ACCOUNT}},
        },
        f"{by_sid['ReadAccessLogs']}",
    )
    # The state table: its item calls on exactly its ARN (a string: one resource, no
    # index or wildcard), no Scan, no table administration.
    state = by_sid["UseStateTable"]
    check(state["Effect"] == "Allow" and state["Resource"] == table_arn, f"{state}")
    check(set(state["Action"]) == STATE_TABLE_ACTIONS, f"state table actions {state['Action']}")
    check("Condition" not in state and "NotAction" not in state, f"{state}")
    check(
        not any("dynamodb" in json.dumps(s) for s in statements if s["Sid"] != "UseStateTable"),
        "DynamoDB in another statement of the task role",
    )
    check(
        set(by_sid)
        == {
            "ConsumeQueue",
            "ReadTrailLogs",
            "ReadAccessLogs",
            "DecryptTrailLogs",
            "UseStateTable",
            "PublishAlerts",
            "PutMetrics",
        },
        f"task role statements {sorted(by_sid)}",
    )
    return docs, env


def container(ecs, resources):
    """The task definition's container and its environment, as a dict."""
    td = ecs.describe_task_definition(taskDefinition=resources["TaskDefinition"]["PhysicalResourceId"])
    c = td["taskDefinition"]["containerDefinitions"][0]
    # moto keeps an !If that chose AWS::NoValue as a null entry (CloudFormation drops it).
    env = {e["name"]: e["value"] for e in c["environment"] if e}
    check(len(env) == len([e for e in c["environment"] if e]), f"duplicate variables in {c['environment']}")
    return c, env


def task_role_policies(iam, resources):
    role = resources["TaskRole"]["PhysicalResourceId"]
    return {
        name: role_policy(iam, role, name) for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
    }


def check_state_table(moto, name, resources):
    """The state table in moto: the key schema and billing the worker and the template
    expect. Returns its ARN."""
    ddb = moto.client("dynamodb")
    check(resources["StateTable"]["PhysicalResourceId"] == name, f"output StateTableName {name}")
    t = ddb.describe_table(TableName=name)["Table"]
    check(
        t["KeySchema"]
        == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        f"state table key schema {t['KeySchema']}",
    )
    check(
        sorted(t["AttributeDefinitions"], key=lambda a: a["AttributeName"])
        == [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        f"state table attributes {t['AttributeDefinitions']}",
    )
    check(
        t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST",
        f"state table billing {t.get('BillingModeSummary')}",
    )
    check(
        not t.get("GlobalSecondaryIndexes") and not t.get("LocalSecondaryIndexes"),
        "indexes on the state table",
    )
    return t["TableArn"]


def check_state_table_template(template):
    """What moto's CloudFormation ignores on the table: TTL, point-in-time recovery,
    encryption, and the policies that keep the table when the stack goes."""
    table = template["Resources"]["StateTable"]
    props = table["Properties"]
    check(
        props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True},
        f"state table TTL {props.get('TimeToLiveSpecification')}",
    )
    check(
        props["PointInTimeRecoverySpecification"]
        == {"PointInTimeRecoveryEnabled": {"Ref": "StatePointInTimeRecovery"}},
        f"state table PITR {props.get('PointInTimeRecoverySpecification')}",
    )
    check(
        template["Parameters"]["StatePointInTimeRecovery"]["Default"] == "true", "PITR is not on by default"
    )
    check(
        props["SSESpecification"] == {"SSEEnabled": True},
        f"state table encryption {props.get('SSESpecification')}",
    )
    check(
        template["Parameters"]["StateBackend"]["Default"] == "dynamodb",
        "the default state backend is not dynamodb",
    )
    check(
        table.get("DeletionPolicy") == "Retain" and table.get("UpdateReplacePolicy") == "Retain",
        "the state table is not retained on deletion and replacement",
    )
    check(table.get("Condition") == "UseDynamoDbState", "the state table is not conditional on StateBackend")


def check_all_created(template, resources):
    """Every resource moto supports was created (moto skips the others without a word)."""
    unsupported = {
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::Subscription",
        "AWS::CloudWatch::Alarm",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    }
    for name, res in template["Resources"].items():
        if res["Type"] not in unsupported:
            check(name in resources, f"{name} ({res['Type']}) was not created")


def role_policy(iam, role, name):
    doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    # moto's CloudFormation keeps inline policies as Python objects and returns their repr,
    # with a statement that an !If turned into AWS::NoValue as None (CloudFormation
    # drops it).
    doc = doc if isinstance(doc, dict) else ast.literal_eval(doc)
    return dict(doc, Statement=[s for s in doc["Statement"] if s is not None])


def prepare_role_for_moto_iam(iam, role, docs):
    """Three moto quirks, so that its IAM enforcement judges the role as AWS would:
    policies that moto's CloudFormation stored as Python objects are stored again as
    JSON (enforcement can only read JSON), the CloudWatch statement is repeated under
    moto's action name, "monitoring:" (the signing name) for "cloudwatch:", and the
    DynamoDB statement is repeated on "*", the only resource moto checks DynamoDB calls
    against (its actions are still enforced; its table ARN is checked as text)."""
    for name, doc in docs.items():
        iam.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(doc))
    statements = [s for doc in docs.values() for s in doc["Statement"]]
    aliases = [
        dict(s, Sid=s["Sid"] + "MotoName", Action=s["Action"].replace("cloudwatch:", "monitoring:"))
        for s in statements
        if isinstance(s["Action"], str) and s["Action"].startswith("cloudwatch:")
    ] + [
        dict(s, Sid=s["Sid"] + "MotoResource", Resource="*")
        for s in statements
        if isinstance(s["Action"], list) and all(a.startswith("dynamodb:") for a in s["Action"])
    ]
    iam.put_role_policy(
        RoleName=role,
        PolicyName="moto-action-names",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": aliases}),
    )


def check_host_policy(statements, kms_key_arn):
    """deploy/iam-policy.json (for instance roles) says what the stack's task role says."""

    def arn_part(arn, i):
        return arn.split(":")[i]

    queue, topic, table = (
        next(s["Resource"] for s in statements if s["Sid"] == sid)
        for sid in ("ConsumeQueue", "PublishAlerts", "UseStateTable")
    )
    values = {
        "REGION": REGION,
        "ACCOUNT_ID": arn_part(queue, 4),
        "QUEUE_NAME": arn_part(queue, 5),
        "BUCKET": BUCKET,
        "ACCESS_LOG_BUCKET": ACCESS_LOG_BUCKET,
        "PREFIX": "AWSLogs/",
        "KMS_KEY_ID": kms_key_arn.split("/")[-1],
        "TOPIC_NAME": arn_part(topic, 5),
        "TABLE_NAME": table.split("/")[-1],
    }
    text = (ROOT / "deploy" / "iam-policy.json").read_text()
    for k in sorted(values, key=len, reverse=True):
        text = text.replace(k, values[k])

    def norm(statement):
        s = dict(statement)
        s["Action"] = sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        return json.dumps(s, sort_keys=True)

    host = sorted(map(norm, json.loads(text)["Statement"]))
    task = sorted(map(norm, statements))
    check(host == task, f"deploy/iam-policy.json differs from the task role:\n{host}\n{task}")


NO_VALUE = object()


def render(template, params, refs, attrs):
    """An evaluator of the template's intrinsic functions for one set of parameters,
    as CloudFormation would resolve them (the ones the queue policy and the Rules use):
    `refs` and `attrs` give the resources' Ref and GetAtt values. Returns
    (evaluate, condition)."""
    values = {name: p.get("Default", "") for name, p in template["Parameters"].items()}
    values.update(params)
    for name, p in template["Parameters"].items():
        if p["Type"] == "CommaDelimitedList":
            # As CloudFormation splits it: "" is [""], which the template must not use as is.
            values[name] = [v.strip() for v in str(values[name]).split(",")]
    values.update(
        {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::NoValue": NO_VALUE}
    )
    values.update(refs)
    conditions = {}

    def condition(name):
        if name not in conditions:
            conditions[name] = evaluate(template["Conditions"][name])
        return conditions[name]

    def sub(s):
        def var(m):
            name = m[1]
            return str(attrs[name] if "." in name else values[name])

        return re.sub(r"\$\{([^}]+)\}", var, s)

    def evaluate(x):
        if isinstance(x, list):
            return [v for v in map(evaluate, x) if v is not NO_VALUE]
        if not isinstance(x, dict):
            return x
        if len(x) == 1:
            ((fn, arg),) = x.items()
            if fn == "Ref":
                return values[arg]
            if fn == "Condition":
                return condition(arg)
            if fn == "Fn::If":
                return evaluate(arg[1] if condition(arg[0]) else arg[2])
            if fn == "Fn::Equals":
                a, b = (evaluate(v) for v in arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not evaluate(arg[0])
            if fn == "Fn::And":
                return all(evaluate(v) for v in arg)
            if fn == "Fn::Or":
                return any(evaluate(v) for v in arg)
            if fn == "Fn::Join":
                return arg[0].join(evaluate(arg[1]))
            if fn == "Fn::GetAtt":
                return attrs[arg if isinstance(arg, str) else ".".join(arg)]
            if fn == "Fn::Sub":
                check(isinstance(arg, str), f"render: Fn::Sub with variables {arg}")
                return sub(arg)
            check(not fn.startswith("Fn::"), f"render: {fn} is not implemented")
        out = {}
        for k, v in x.items():
            v = evaluate(v)
            if v is not NO_VALUE:
                out[k] = v
        return out

    return evaluate, condition


def check_rules(template, params, refs, attrs, holds):
    """The template's Rules, for these parameters: every assertion holds (or not)."""
    evaluate, _ = render(template, params, refs, attrs)
    failed = [
        a["AssertDescription"]
        for rule in template["Rules"].values()
        if evaluate(rule.get("RuleCondition", True))
        for a in rule["Assertions"]
        if not evaluate(a["Assert"])
    ]
    check(
        not failed if holds else failed,
        f"rules for {params}: failed {failed}, want {'none' if holds else 'some'}",
    )


def arn_like(pattern, value):
    """IAM's ArnEquals/ArnLike: * and ? match within the whole ARN (case-sensitive)."""
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), value) is not None


def conditions_hold(statement, ctx):
    """Whether every condition of a statement holds for a request with these context
    keys. As in IAM: a positive operator on an absent key fails, a negated one holds;
    a list of values is OR for positive operators and NOR for negated ones."""
    for op, keys in statement.get("Condition", {}).items():
        for key, want in keys.items():
            want = want if isinstance(want, list) else [want]
            check(
                want and all(isinstance(w, str) and w for w in want), f"empty condition values: {statement}"
            )
            have = ctx.get(key)
            if op in ("ArnEquals", "ArnLike"):
                ok = have is not None and any(arn_like(w, have) for w in want)
            elif op in ("ArnNotEquals", "ArnNotLike"):
                ok = have is None or not any(arn_like(w, have) for w in want)
            elif op == "StringEquals":
                ok = have is not None and have in want
            elif op == "Bool":
                ok = have is not None and have in want
            else:
                fail(f"conditions_hold: {op} is not implemented")
            if not ok:
                return False
    return True


def queue_verdict(policy, queue_arn, request):
    """The queue policy's verdict on an sqs:SendMessage request: "deny" (an explicit
    Deny), "allow" (an Allow for this service principal), or "iam" (neither: a
    principal of the account then needs its own IAM allow; a service is refused)."""
    ctx = dict(request, **{"aws:SecureTransport": "true"})
    verdict = "iam"
    for s in policy["Statement"]:
        action = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        if s["Resource"] != queue_arn or not any(a in ("sqs:SendMessage", "sqs:*") for a in action):
            continue
        principal = s["Principal"]
        if principal != "*" and principal.get("Service") != request.get("service"):
            continue
        if conditions_hold(s, ctx):
            if s["Effect"] == "Deny":
                return "deny"
            verdict = "allow"
    return verdict


def check_queue_policy(template, params, refs, attrs, cases):
    """moto skips AWS::SQS::QueuePolicy: rendered for these parameters, the queue
    policy's verdict on each case (a sender's request context) is the one wanted."""
    evaluate, _ = render(template, params, refs, attrs)
    statements = template["Resources"]["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    deny = next((s for s in statements if isinstance(s, dict) and s.get("Sid") == "DenyOtherSenders"), None)
    check(deny is not None, f"no DenyOtherSenders statement in the queue policy: {statements}")
    check(
        deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "sqs:SendMessage",
        f"DenyOtherSenders: {deny}",
    )
    policy = evaluate(template["Resources"]["QueuePolicy"]["Properties"]["PolicyDocument"])
    for what, request, want in cases:
        got = queue_verdict(policy, attrs["Queue.Arn"], request)
        check(got == want, f"queue policy for {what}: {got}, want {want}\n{json.dumps(policy, indent=1)}")
    return policy


def check_email_filter(moto, template, topic_arn):
    """The e-mail subscription's filter (for the default severity), tried in moto.

    moto cannot evaluate "$or" on message bodies, so each branch is subscribed as a
    policy of its own: together they must let through exactly the alert at or above
    the severity and the alarm notification.
    """
    sqs, sns = moto.client("sqs"), moto.client("sns")
    props = template["Resources"]["AlertEmailSubscription"]["Properties"]
    branches = props["FilterPolicy"]["$or"]
    check(
        branches[0]["severity"]
        == {"Fn::FindInMap": ["SeverityAtLeast", {"Ref": "AlertEmailMinSeverity"}, "Levels"]},
        f"unexpected FilterPolicy {props['FilterPolicy']}",
    )
    branches = [{"severity": template["Mappings"]["SeverityAtLeast"]["medium"]["Levels"]}, branches[1]]
    messages = [
        {"rule_id": "r", "severity": "info"},
        {"rule_id": "r", "severity": "high"},
        {"AlarmName": "a", "NewStateValue": "ALARM"},
    ]
    inboxes = []
    for i, policy in enumerate(branches):
        inbox = sqs.create_queue(QueueName=f"filter-inbox-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={
                "FilterPolicyScope": props["FilterPolicyScope"],
                "FilterPolicy": json.dumps(policy),
                "RawMessageDelivery": "true",
            },
        )
        inboxes.append(inbox)
    for body in messages:
        sns.publish(TopicArn=topic_arn, Message=json.dumps(body))
    got = []
    for inbox in inboxes:
        while msgs := sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            for m in msgs:
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=inbox, ReceiptHandle=m["ReceiptHandle"])
    check(
        sorted(map(json.dumps, got)) == sorted(map(json.dumps, messages[1:])),
        f"e-mail filter let through {got}",
    )


# What the worker run takes from the task definition: what it admits and where its state is.
TASK_ENV = (
    "TRAILWATCH_BUCKETS",
    "TRAILWATCH_KEY_PREFIX",
    "TRAILWATCH_EXPECTED_BUCKET_OWNER",
    "TRAILWATCH_STATE_BACKEND",
    "TRAILWATCH_STATE_TABLE",
)


def run_worker(binary, moto, outputs, creds, task_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAILWATCH_"))}
    env.update(
        AWS_ENDPOINT_URL=moto.endpoint,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID=creds["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=creds["aws_secret_access_key"],
        AWS_SESSION_TOKEN=creds["aws_session_token"],
        AWS_EC2_METADATA_DISABLED="true",
        TRAILWATCH_QUEUE_URL=outputs["QueueUrl"],
        TRAILWATCH_SINKS="stdout",
        TRAILWATCH_RULES=str(ROOT / "rules"),
        TRAILWATCH_HEALTH_LISTEN=f"127.0.0.1:{free_port()}",
        TRAILWATCH_LOG="info",
        NO_COLOR="1",
    )
    env.update({k: task_env[k] for k in TASK_ENV if k in task_env})
    started = time.monotonic()
    try:
        p = subprocess.run(
            [binary, "run", "--until-idle", "5s"], env=env, capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        fail("the worker did not exit within 180 s")
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        fail(f"the worker exited with {p.returncode}")
    for needle in ("AccessDenied", "file failed", "kept for redelivery"):
        if needle in p.stderr:
            sys.stderr.write(p.stderr[-4000:])
            fail(f"the worker logged {needle!r}")
    print(f"deploy stack test: the worker drained the queue in {time.monotonic() - started:.0f} s")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def expected_alerts(binary):
    """What the offline path of the same binary finds in the same files with the same
    rules (alert ids are deterministic): the worker must find exactly that. With the
    rules bundled in the repository at the time of writing that is 6 alerts."""
    p = subprocess.run(
        [binary, "scan", "--rules", str(ROOT / "rules"), str(SAMPLES)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        fail(f"trailwatch scan of the samples exited with {p.returncode}")
    return sorted(json.loads(line)["alert_id"] for line in p.stdout.splitlines() if line.strip())


def denied(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        # moto answers SQS's JSON protocol with an XML error, which boto3 reports by status.
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 403 and "AccessDenied" in str(e)
    return False


def check_state_table_access(ddb, table):
    """With the task role's credentials and IAM enforced: the item calls the worker makes
    are allowed, a Scan and table administration are not."""

    def allowed(what, call):
        try:
            return call()
        except botocore.exceptions.ClientError as e:
            fail(f"the task role may not {what} on the state table: {e.response['Error'].get('Code')}")

    key = {"pk": {"S": "deploy-stack-test"}, "sk": {"S": "probe"}}
    allowed("DescribeTable", lambda: ddb.describe_table(TableName=table))
    item = dict(key, expires_at={"N": str(int(time.time()) + 60)})
    allowed("PutItem", lambda: ddb.put_item(TableName=table, Item=item))
    allowed(
        "UpdateItem",
        lambda: ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET n = if_not_exists(n, :z) + :one",
            ExpressionAttributeValues={":z": {"N": "0"}, ":one": {"N": "1"}},
        ),
    )
    got = allowed("GetItem", lambda: ddb.get_item(TableName=table, Key=key))
    check("Item" in got, "the probe item is not in the state table")
    got = allowed(
        "Query",
        lambda: ddb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": key["pk"]},
        ),
    )
    check(got["Count"] == 1, f"query of the probe item: {got['Count']}")
    allowed(
        "BatchWriteItem",
        lambda: ddb.batch_write_item(RequestItems={table: [{"DeleteRequest": {"Key": key}}]}),
    )
    check(denied(lambda: ddb.scan(TableName=table)), "the task role may scan the state table")
    check(denied(lambda: ddb.delete_table(TableName=table)), "the task role may delete the state table")
    check(
        denied(
            lambda: ddb.create_table(
                TableName="trailwatch-other",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        ),
        "the task role may create tables",
    )


def check_alarm_metrics(cw, template):
    """Every alarm on a TrailWatch metric watches a metric (and dimension) the worker sent."""
    for name, res in template["Resources"].items():
        p = res["Properties"]
        if res["Type"] != "AWS::CloudWatch::Alarm" or p["Namespace"] != "TrailWatch":
            continue
        sent = cw.list_metrics(Namespace="TrailWatch", MetricName=p["MetricName"])["Metrics"]
        check(sent, f"alarm {name}: the worker sends no {p['MetricName']}")
        for d in p.get("Dimensions", []):
            check(
                any(x["Name"] == d["Name"] for m in sent for x in m.get("Dimensions", [])),
                f"alarm {name}: the worker sends no {p['MetricName']} by {d['Name']}",
            )


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "debug" / "trailwatch")
    check(os.access(binary, os.X_OK), f"no trailwatch binary at {binary}")
    template = load_template()
    check_state_table_template(template)
    moto = Moto()
    try:
        s3, sqs, cf, ec2, kms, sts, iam, cw = (
            moto.client(s) for s in ("s3", "sqs", "cloudformation", "ec2", "kms", "sts", "iam", "cloudwatch")
        )
        vpc = next(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault"))
        subnets = [
            s["SubnetId"]
            for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        ]
        key_arn = kms.create_key(Description="trail log encryption")["KeyMetadata"]["Arn"]
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=ACCESS_LOG_BUCKET)

        # --- the stack --------------------------------------------------------------
        params = {
            "TrailBucketName": BUCKET,
            "TrailKmsKeyArn": key_arn,
            "ContainerImage": "trailwatch:test",
            "VpcId": vpc,
            "SubnetIds": ",".join(subnets[:2]),
            "AlertTopicMinSeverity": "high",
            "StateBackend": "dynamodb",
            "AccessLogBucketName": ACCESS_LOG_BUCKET,
            "BackfillPrincipalArns": ",".join(BACKFILL_PRINCIPALS),
        }
        outputs, resources = create_stack(cf, "trailwatch", params)
        check_all_created(template, resources)
        task_policies, task_env = check_stack(moto, outputs, resources, key_arn, "high")
        check_host_policy([s for doc in task_policies.values() for s in doc["Statement"]], key_arn)
        check_email_filter(moto, template, outputs["AlertTopicArn"])
        rule_arn = moto.client("events").describe_rule(
            Name=resources["TrailObjectCreatedRule"]["PhysicalResourceId"]
        )["Arn"]
        refs = {"Queue": outputs["QueueUrl"]}
        attrs = {"Queue.Arn": outputs["QueueArn"], "TrailObjectCreatedRule.Arn": rule_arn}
        check_rules(template, params, refs, attrs, holds=True)
        principal = f"arn:aws:iam::{ACCOUNT}:role/"
        check_queue_policy(
            template,
            params,
            refs,
            attrs,
            [
                (
                    "the stack's EventBridge rule",
                    {"service": "events.amazonaws.com", "aws:SourceArn": rule_arn},
                    "allow",
                ),
                (
                    "the access-log bucket's notifications",
                    {
                        "service": "s3.amazonaws.com",
                        "aws:SourceArn": f"arn:aws:s3:::{ACCESS_LOG_BUCKET}",
                        "aws:SourceAccount": ACCOUNT,
                    },
                    "allow",
                ),
                (
                    "a bucket of the access-log bucket's name in another account",
                    {
                        "service": "s3.amazonaws.com",
                        "aws:SourceArn": f"arn:aws:s3:::{ACCESS_LOG_BUCKET}",
                        "aws:SourceAccount": "210987654321",
                    },
                    "iam",  # no Allow: a service principal is refused
                ),
                (
                    "the trail bucket's own notifications",
                    {
                        "service": "s3.amazonaws.com",
                        "aws:SourceArn": f"arn:aws:s3:::{BUCKET}",
                        "aws:SourceAccount": ACCOUNT,
                    },
                    "deny",
                ),
                (
                    "another EventBridge rule",
                    {"service": "events.amazonaws.com", "aws:SourceArn": rule_arn + "-x"},
                    "deny",
                ),
                ("the backfill role", {"aws:PrincipalArn": principal + "trailwatch-backfill"}, "iam"),
                (
                    "a role matching the backfill wildcard",
                    {"aws:PrincipalArn": principal + "SecOpsAnalyst"},
                    "iam",
                ),
                ("another role of the account", {"aws:PrincipalArn": principal + "admin"}, "deny"),
                (
                    "another role naming the rule as its source",
                    {"aws:PrincipalArn": principal + "admin", "aws:SourceArn": f"arn:aws:s3:::{BUCKET}"},
                    "deny",
                ),
            ],
        )
        # StateBackend=memory needs a single task; so does nothing else here.
        check_rules(template, dict(params, StateBackend="memory"), refs, attrs, holds=False)
        check_rules(template, dict(params, StateBackend="memory", MaxTaskCount="1"), refs, attrs, holds=True)
        print(f"deploy stack test: stack created in moto, {len(resources)} resources")

        # --- trail files arrive ---------------------------------------------------------
        # The one-time bucket setting the template cannot make: events to EventBridge.
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        files = sorted(p for p in SAMPLES.rglob("*") if p.is_file())
        for f in files:
            s3.upload_file(str(f), BUCKET, str(f.relative_to(SAMPLES)))
        s3.put_object(Bucket=BUCKET, Key="reports/not-a-trail-file.json", Body=b"{}")
        s3.put_object(Bucket=ACCESS_LOG_BUCKET, Key="other/not-an-access-log", Body=b"-")
        queued = sqs.get_queue_attributes(
            QueueUrl=outputs["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )
        queued = int(queued["Attributes"]["ApproximateNumberOfMessages"])
        check(queued == len(files), f"{queued} notifications queued for {len(files)} files under AWSLogs/")
        print(f"deploy stack test: {len(files)} files uploaded, {queued} EventBridge events in the queue")

        # --- the worker, as the task role -------------------------------------------------
        task_role = resources["TaskRole"]["PhysicalResourceId"]
        prepare_role_for_moto_iam(iam, task_role, task_policies)
        role_arn = iam.get_role(RoleName=task_role)["Role"]["Arn"]
        c = sts.assume_role(RoleArn=role_arn, RoleSessionName="trailwatch-task")["Credentials"]
        creds = {
            "aws_access_key_id": c["AccessKeyId"],
            "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"],
        }
        moto.enforce_iam(True)
        try:
            task_s3, task_sqs = moto.client("s3", creds), moto.client("sqs", creds)
            check(
                denied(lambda: task_s3.get_object(Bucket=BUCKET, Key="reports/not-a-trail-file.json")),
                "the task role may read objects outside the log prefix",
            )
            check(
                denied(lambda: task_s3.get_object(Bucket=ACCESS_LOG_BUCKET, Key="other/not-an-access-log")),
                "the task role may read objects of the access-log bucket outside the log prefix",
            )
            check(
                denied(lambda: task_sqs.receive_message(QueueUrl=outputs["DeadLetterQueueUrl"])),
                "the task role may read the dead-letter queue",
            )
            check_state_table_access(moto.client("dynamodb", creds), outputs["StateTableName"])
            alerts = run_worker(binary, moto, outputs, creds, task_env)
            left = task_sqs.get_queue_attributes(
                QueueUrl=outputs["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        finally:
            moto.enforce_iam(False)
        print(
            f"deploy stack test: the worker, with the task role's credentials, printed {len(alerts)} alerts"
        )

        want = expected_alerts(binary)
        check(want, "trailwatch scan finds no alert in the samples: nothing to compare")
        check(
            sorted(a["alert_id"] for a in alerts) == want,
            f"{len(alerts)} alerts ({', '.join(a['rule_id'] for a in alerts)}), "
            f"want the {len(want)} that trailwatch scan finds in the same files",
        )
        check(
            left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"},
            f"queue not empty after the run: {left}",
        )
        dlq = sqs.get_queue_attributes(
            QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        check(dlq["ApproximateNumberOfMessages"] == "0", "messages in the dead-letter queue")
        trail_files = sum("CloudTrail-Digest" not in str(f) for f in files)  # digests are skipped
        files_processed = metric_sum(cw, "FilesProcessed")
        check(files_processed == trail_files, f"FilesProcessed = {files_processed}, want {trail_files}")
        high = sum(a["severity"] == "high" for a in alerts)
        got = metric_sum(cw, "Alerts", [{"Name": "Severity", "Value": "high"}])
        check(got == high, f"Alerts Severity=high = {got}, want {high}")
        check_alarm_metrics(cw, template)

        # --- an access log file arrives ----------------------------------------------------
        # The access-log bucket owner's one-time setting: its notifications to the queue,
        # for keys under the prefix (the logged buckets' TargetPrefix).
        s3.put_bucket_notification_configuration(
            Bucket=ACCESS_LOG_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": outputs["QueueArn"],
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "AWSLogs/"}]}},
                    }
                ]
            },
        )
        logs = sorted(p for p in ACCESS_LOGS.rglob("*") if p.is_file())
        for f in logs:
            s3.upload_file(str(f), ACCESS_LOG_BUCKET, "AWSLogs/" + str(f.relative_to(ACCESS_LOGS)))
        moto.enforce_iam(True)
        try:
            more = run_worker(binary, moto, outputs, creds, task_env)
            left = moto.client("sqs", creds).get_queue_attributes(
                QueueUrl=outputs["QueueUrl"],
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        finally:
            moto.enforce_iam(False)
        # The sample access log raises nothing of its own; a worker whose state outlived
        # the first run may send the keys of its DeleteObjects alerts (same alert_id).
        check(
            all(a["alert_id"] in want for a in more),
            f"the access log raised {[a['rule_id'] for a in more]}",
        )
        check(
            left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"},
            f"queue not empty after the access-log run: {left}",
        )
        files_processed = metric_sum(cw, "FilesProcessed")
        check(
            files_processed == trail_files + len(logs),
            f"FilesProcessed = {files_processed} after the access log, want {trail_files + len(logs)}",
        )
        print(f"deploy stack test: the worker read {len(logs)} access log file from {ACCESS_LOG_BUCKET}")

        # --- the other wiring: the trail's SNS topic, state in memory -------------------
        trail_topic = moto.client("sns").create_topic(Name="cloudtrail-notifications")["TopicArn"]
        sns_params = {
            "TrailBucketName": BUCKET,
            "Wiring": "CloudTrailSNS",
            "TrailTopicArn": trail_topic,
            "ContainerImage": "trailwatch:test",
            "VpcId": vpc,
            "SubnetIds": subnets[0],
            "StateBackend": "memory",
            "MaxTaskCount": "1",
        }
        other_outputs, other = create_stack(cf, "trailwatch-sns", sns_params)
        check(
            "TrailObjectCreatedRule" not in other and "TrailKeyDecryptPolicy" not in other,
            "the CloudTrailSNS stack has the EventBridge rule or the KMS policy",
        )
        check(
            "Queue" in other and "Service" in other, "the CloudTrailSNS stack lacks the queue or the service"
        )
        check(
            "StateTable" not in other and "StateTableName" not in other_outputs,
            "the StateBackend=memory stack has a state table",
        )
        _, env = container(moto.client("ecs"), other)
        check(env["TRAILWATCH_STATE_BACKEND"] == "memory", f"task environment {env}")
        check("TRAILWATCH_STATE_TABLE" not in env, f"task environment {env}")
        check(env["TRAILWATCH_BUCKETS"] == BUCKET, f"task environment {env}")
        sids = {s["Sid"] for doc in task_role_policies(iam, other).values() for s in doc["Statement"]}
        check(
            sids == {"ConsumeQueue", "ReadTrailLogs", "PublishAlerts", "PutMetrics"},
            f"the CloudTrailSNS stack's task role statements {sorted(sids)}",
        )
        check_rules(template, sns_params, {}, {}, holds=True)
        check_rules(template, dict(sns_params, TrailTopicArn=""), {}, {}, holds=False)
        other_queue_arn = sqs.get_queue_attributes(
            QueueUrl=other_outputs["QueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        policy = check_queue_policy(
            template,
            sns_params,
            {"Queue": other_outputs["QueueUrl"]},
            {"Queue.Arn": other_queue_arn},
            [
                (
                    "the trail's topic",
                    {"service": "sns.amazonaws.com", "aws:SourceArn": trail_topic},
                    "allow",
                ),
                (
                    "another topic",
                    {"service": "sns.amazonaws.com", "aws:SourceArn": trail_topic + "-x"},
                    "deny",
                ),
                (
                    "an access-log bucket's notifications",
                    {
                        "service": "s3.amazonaws.com",
                        "aws:SourceArn": f"arn:aws:s3:::{ACCESS_LOG_BUCKET}",
                        "aws:SourceAccount": ACCOUNT,
                    },
                    "deny",
                ),
                # No backfill principals: every principal of the account is denied.
                ("a would-be backfill role", {"aws:PrincipalArn": principal + "trailwatch-backfill"}, "deny"),
            ],
        )
        deny = next(s for s in policy["Statement"] if s["Sid"] == "DenyOtherSenders")
        check(
            deny["Condition"] == {"ArnNotEquals": {"aws:SourceArn": [trail_topic]}},
            f"DenyOtherSenders without access logs or backfill principals: {deny['Condition']}",
        )
        print("deploy stack test: passed")
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
