"""Seed data of the city platform simulator: the 14 cities of the province, a few districts each, the demo
catalogue's items (as a city platform would have copied them from the province catalogue), and the names,
officers and opinions that make a generated case look like one a real window clerk handled.

Like every mock, this knows nothing of hub/: it holds its own copy of what a city platform knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from mocks.registries.checks import citizen_id_check


@dataclass(frozen=True)
class City:
    code: str  # the partner code on the wire (pinyin)
    region: str  # GB/T 2260
    name: str
    prefix: str  # the platform's own case-number prefix
    districts: tuple[str, ...]


CITIES: dict[str, City] = {c.code: c for c in (
    City("shenyang", "210100", "沈阳市", "SY", ("210102", "210103", "210104", "210105", "210106", "210112")),
    City("dalian", "210200", "大连市", "DL", ("210202", "210203", "210204", "210211", "210213")),
    City("anshan", "210300", "鞍山市", "AS", ("210302", "210303", "210304", "210311")),
    City("fushun", "210400", "抚顺市", "FS", ("210402", "210403", "210404", "210411")),
    City("benxi", "210500", "本溪市", "BX", ("210502", "210503", "210504", "210505")),
    City("dandong", "210600", "丹东市", "DD", ("210602", "210603", "210604")),
    City("jinzhou", "210700", "锦州市", "JZ", ("210702", "210703", "210711")),
    City("yingkou", "210800", "营口市", "YK", ("210802", "210803", "210804", "210811")),
    City("fuxin", "210900", "阜新市", "FX", ("210902", "210903", "210904", "210905")),
    City("liaoyang", "211000", "辽阳市", "LY", ("211002", "211003", "211004", "211005")),
    City("panjin", "211100", "盘锦市", "PJ", ("211102", "211103", "211104")),
    City("tieling", "211200", "铁岭市", "TL", ("211202", "211204")),
    City("chaoyang", "211300", "朝阳市", "CY", ("211302", "211303")),
    City("huludao", "211400", "葫芦岛市", "HLD", ("211402", "211403", "211404")),
)}


@dataclass(frozen=True)
class CatalogueItem:
    code: str  # province item code, 18 characters
    region: str
    name: str
    applicant_types: tuple[str, ...]
    promised_limit_days: int


def item_code(region: str, department: str, item_type: str, main_item: str, sub_item: str = "000") -> str:
    """A province item code: region, department, type, main item, sub-item, ISO 7064 MOD 11-2 check."""
    body = f"{region}{department}{item_type}{main_item}{sub_item}"
    return body + citizen_id_check(body)


def _item(region: str, department: str, item_type: str, main_item: str, name: str, applicant_types: str,
          days: int) -> CatalogueItem:
    return CatalogueItem(item_code(region, department, item_type, main_item), region, name,
                         tuple(applicant_types), days)


# The items of the hub's demo catalogue that cities implement; used when the simulator is given neither item
# codes nor the address of the hub's catalogue.
DEMO_ITEMS: tuple[CatalogueItem, ...] = (
    _item("210100", "001", "01", "001", "企业设立登记", "12", 1),
    _item("210100", "003", "01", "004", "建筑工程施工许可证核发", "236", 3),
    _item("210100", "007", "01", "016", "医师执业注册", "1", 5),
    _item("210100", "008", "01", "005", "高级中学教师资格认定", "1", 20),
    _item("210102", "001", "01", "003", "食品经营许可", "1235", 5),
    _item("210102", "002", "07", "012", "居民身份证换领", "1", 15),
    _item("210102", "008", "01", "005", "初级中学、小学教师资格认定", "1", 20),
    _item("210200", "004", "07", "003", "不动产转移登记", "12345", 5),
    _item("210200", "006", "01", "008", "道路危险货物运输许可", "2", 10),
    _item("210200", "009", "01", "003", "人力资源服务许可", "25", 5),
    _item("210200", "004", "01", "012", "建设用地规划许可证核发", "236", 5),
    _item("210213", "010", "07", "004", "婚姻登记", "1", 0),
    _item("210213", "001", "01", "002", "个体工商户登记", "1", 0),
    _item("210213", "007", "01", "011", "公共场所卫生许可", "125", 5),
)

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎"
GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超",
         "秀兰", "霞", "平", "刚", "桂英", "建华", "玉兰", "志强", "海燕", "晓东", "文博", "子涵", "欣怡", "浩然")
COMPANY_WORDS = ("北方", "盛京", "浑河", "辽海", "滨海", "东港", "兴辽", "华晨", "金桥", "鑫源", "宏达", "恒泰", "星海",
                 "长兴", "瑞丰")
COMPANY_TRADES = ("科技", "建设工程", "物流", "商贸", "食品", "医药", "人力资源服务", "房地产开发", "环保科技",
                  "餐饮管理")
COMPANY_FORMS = ("有限公司", "有限责任公司", "股份有限公司")
INSTITUTIONS = ("市第一人民医院", "市实验中学", "市疾病预防控制中心", "市图书馆", "区社区卫生服务中心")
ORGANISATIONS = ("市个体劳动者协会", "市志愿者协会", "区慈善总会")
WINDOWS = ("综合受理窗口", "投资建设窗口", "社会事务窗口", "商事登记窗口", "不动产登记窗口")

OPINIONS: dict[str, tuple[str, ...]] = {
    "submit": ("网上申报", "窗口收件", "自助终端申报"),
    "accept": ("申请材料齐全，符合法定形式，予以受理。", "材料齐全，当场受理。"),
    "refuse_intake": ("申请事项依法不属于本机关职权范围，不予受理，已告知向有关行政机关申请。",
                      "申请人不具备申请资格，不予受理。"),
    "request_supplement": ("请一次性补正：营业执照副本复印件、法定代表人身份证明。",
                           "请补正：申请表未签字盖章，平面图比例不符。"),
    "supplement": ("已按一次性告知书补正全部材料。",),
    "review": ("经审查，申请材料真实有效，符合法定条件，建议予以许可。", "现场核查符合要求，建议批准。"),
    "grant": ("准予行政许可。", "同意，准予许可。"),
    "deny": ("不符合法定条件，依据《中华人民共和国行政许可法》第三十八条第二款，不予许可。",),
    "complete": ("已办结，证照已通过邮政送达。", "已办结，申请人窗口领取。"),
    "withdraw": ("申请人主动撤回申请。",),
}
# Administrative Licensing Law Art. 45's kinds only: the hub applies each as a suspension of the case's clock.
SPECIAL_PROCEDURES = (("专家评审", "需组织专家对技术方案进行评审"), ("现场检测", "需现场检测核实"),
                      ("听证", "申请人申请听证"), ("鉴定", "需对样品进行鉴定"))
