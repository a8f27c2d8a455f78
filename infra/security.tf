# Two groups: `members` (every node: all traffic from the other members, all egress) and
# `master` (SSH from the operator's CIDR only, and the private subnet's traffic that the
# master forwards as NAT). No other ingress exists; dashboards are reached through SSH tunnels.

resource "aws_security_group" "members" {
  name        = "clusterkit-${var.cluster_name}-members"
  description = "clusterkit ${var.cluster_name}: traffic between cluster members"
  vpc_id      = aws_vpc.cluster.id

  tags = { Name = "clusterkit-${var.cluster_name}-members" }
}

resource "aws_vpc_security_group_ingress_rule" "members_from_members" {
  security_group_id            = aws_security_group.members.id
  description                  = "all traffic from the other cluster members"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.members.id

  tags = { Name = "clusterkit-${var.cluster_name}-members-in" }
}

resource "aws_vpc_security_group_egress_rule" "members_out" {
  # checkov:skip=CKV_AWS_382:the nodes fetch packages, Python wheels and Hadoop from the internet, and the master forwards the workers' traffic as their NAT
  security_group_id = aws_security_group.members.id
  description       = "egress open: packages, wheels, Hadoop, and NAT for the workers"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"

  tags = { Name = "clusterkit-${var.cluster_name}-members-out" }
}

resource "aws_security_group" "master" {
  name        = "clusterkit-${var.cluster_name}-master"
  description = "clusterkit ${var.cluster_name}: SSH from the operator, NAT for the private subnet"
  vpc_id      = aws_vpc.cluster.id

  tags = { Name = "clusterkit-${var.cluster_name}-master" }
}

# `clusterkit allow-ip` replaces this rule's CIDR when the operator's address changes.
resource "aws_vpc_security_group_ingress_rule" "ssh_from_operator" {
  security_group_id = aws_security_group.master.id
  description       = "SSH from the operator only"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.operator_cidr

  tags = { Name = "clusterkit-${var.cluster_name}-ssh" }
}

resource "aws_vpc_security_group_ingress_rule" "nat_from_private" {
  security_group_id = aws_security_group.master.id
  description       = "the private subnet's traffic, forwarded by the master as NAT"
  ip_protocol       = "-1"
  cidr_ipv4         = var.private_subnet_cidr

  tags = { Name = "clusterkit-${var.cluster_name}-nat" }
}
